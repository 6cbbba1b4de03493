file(REMOVE_RECURSE
  "CMakeFiles/test_attention.dir/test_attention.c.o"
  "CMakeFiles/test_attention.dir/test_attention.c.o.d"
  "test_attention"
  "test_attention.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/test_attention.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
