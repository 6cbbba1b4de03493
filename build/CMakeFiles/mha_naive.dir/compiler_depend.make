# Empty compiler generated dependencies file for mha_naive.
# This may be replaced when dependencies are built.
