file(REMOVE_RECURSE
  "CMakeFiles/mha_naive.dir/tests/naive.c.o"
  "CMakeFiles/mha_naive.dir/tests/naive.c.o.d"
  "libmha_naive.a"
  "libmha_naive.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/mha_naive.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
