# Empty compiler generated dependencies file for test_attention.
# This may be replaced when dependencies are built.
