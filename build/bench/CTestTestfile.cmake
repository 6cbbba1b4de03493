# CMake generated Testfile for 
# Source directory: /work/main/bench
# Build directory: /work/main/build/bench
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test([=[bench_smoke]=] "sh" "/work/main/bench/smoke.sh" "/work/main/build/bench/mha_bench")
set_tests_properties([=[bench_smoke]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/bench/CMakeLists.txt;7;add_test;/work/main/bench/CMakeLists.txt;0;")
