# CMake generated Testfile for 
# Source directory: /work/main/tests
# Build directory: /work/main/build/tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
add_test([=[api]=] "/work/main/build/tests/test_api")
set_tests_properties([=[api]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[attention]=] "/work/main/build/tests/test_attention")
set_tests_properties([=[attention]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[ffn]=] "/work/main/build/tests/test_ffn")
set_tests_properties([=[ffn]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[layer]=] "/work/main/build/tests/test_layer")
set_tests_properties([=[layer]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[errors]=] "/work/main/build/tests/test_errors")
set_tests_properties([=[errors]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[threads]=] "/work/main/build/tests/test_threads")
set_tests_properties([=[threads]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[memory]=] "/work/main/build/tests/test_memory")
set_tests_properties([=[memory]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[backward]=] "/work/main/build/tests/test_backward")
set_tests_properties([=[backward]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[safetensors]=] "/work/main/build/tests/test_safetensors")
set_tests_properties([=[safetensors]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;12;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[alloc]=] "/work/main/build/tests/test_alloc")
set_tests_properties([=[alloc]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;25;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[cxx_header]=] "/work/main/build/tests/test_cxx_header")
set_tests_properties([=[cxx_header]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;32;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[exports]=] "sh" "/work/main/tests/check_exports.sh" "/work/main/build/libmha.so.1.2.0" "/work/main/src/libmha.map" "/work/main/include/mha.h")
set_tests_properties([=[exports]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;34;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[install_consumer]=] "sh" "/work/main/tests/consumer/run.sh" "/work/main/build" "/work/main")
set_tests_properties([=[install_consumer]=] PROPERTIES  _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;42;add_test;/work/main/tests/CMakeLists.txt;0;")
add_test([=[python]=] "/usr/bin/python3" "-m" "pytest" "-q" "-p" "no:cacheprovider" "/work/main/tests/python")
set_tests_properties([=[python]=] PROPERTIES  ENVIRONMENT "LIBMHA_PATH=/work/main/build/libmha.so.1.2.0;PYTHONPATH=/work/main/python" _BACKTRACE_TRIPLES "/work/main/tests/CMakeLists.txt;50;add_test;/work/main/tests/CMakeLists.txt;0;")
