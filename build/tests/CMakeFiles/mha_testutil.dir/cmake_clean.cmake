file(REMOVE_RECURSE
  "CMakeFiles/mha_testutil.dir/testutil.c.o"
  "CMakeFiles/mha_testutil.dir/testutil.c.o.d"
  "libmha_testutil.a"
  "libmha_testutil.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/mha_testutil.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
