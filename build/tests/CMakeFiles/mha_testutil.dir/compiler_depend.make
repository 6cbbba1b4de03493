# Empty compiler generated dependencies file for mha_testutil.
# This may be replaced when dependencies are built.
