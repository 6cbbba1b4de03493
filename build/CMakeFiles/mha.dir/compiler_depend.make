# Empty compiler generated dependencies file for mha.
# This may be replaced when dependencies are built.
