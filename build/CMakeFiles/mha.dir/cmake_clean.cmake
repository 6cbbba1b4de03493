file(REMOVE_RECURSE
  "CMakeFiles/mha.dir/src/args.c.o"
  "CMakeFiles/mha.dir/src/args.c.o.d"
  "CMakeFiles/mha.dir/src/attention.c.o"
  "CMakeFiles/mha.dir/src/attention.c.o.d"
  "CMakeFiles/mha.dir/src/attention_backward.c.o"
  "CMakeFiles/mha.dir/src/attention_backward.c.o.d"
  "CMakeFiles/mha.dir/src/context.c.o"
  "CMakeFiles/mha.dir/src/context.c.o.d"
  "CMakeFiles/mha.dir/src/ffn.c.o"
  "CMakeFiles/mha.dir/src/ffn.c.o.d"
  "CMakeFiles/mha.dir/src/gemm.c.o"
  "CMakeFiles/mha.dir/src/gemm.c.o.d"
  "CMakeFiles/mha.dir/src/layer.c.o"
  "CMakeFiles/mha.dir/src/layer.c.o.d"
  "CMakeFiles/mha.dir/src/math.c.o"
  "CMakeFiles/mha.dir/src/math.c.o.d"
  "CMakeFiles/mha.dir/src/norm.c.o"
  "CMakeFiles/mha.dir/src/norm.c.o.d"
  "CMakeFiles/mha.dir/src/params.c.o"
  "CMakeFiles/mha.dir/src/params.c.o.d"
  "CMakeFiles/mha.dir/src/safetensors.c.o"
  "CMakeFiles/mha.dir/src/safetensors.c.o.d"
  "CMakeFiles/mha.dir/src/saved.c.o"
  "CMakeFiles/mha.dir/src/saved.c.o.d"
  "CMakeFiles/mha.dir/src/status.c.o"
  "CMakeFiles/mha.dir/src/status.c.o.d"
  "CMakeFiles/mha.dir/src/threads.c.o"
  "CMakeFiles/mha.dir/src/threads.c.o.d"
  "libmha.pdb"
  "libmha.so"
  "libmha.so.1"
  "libmha.so.1.2.0"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/mha.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
