#----------------------------------------------------------------
# Generated CMake target import file for configuration "Release".
#----------------------------------------------------------------

# Commands may need to know the format version.
set(CMAKE_IMPORT_FILE_VERSION 1)

# Import target "mha::mha" for configuration "Release"
set_property(TARGET mha::mha APPEND PROPERTY IMPORTED_CONFIGURATIONS RELEASE)
set_target_properties(mha::mha PROPERTIES
  IMPORTED_LOCATION_RELEASE "${_IMPORT_PREFIX}/lib/libmha.so.1.2.0"
  IMPORTED_SONAME_RELEASE "libmha.so.1"
  )

list(APPEND _cmake_import_check_targets mha::mha )
list(APPEND _cmake_import_check_files_for_mha::mha "${_IMPORT_PREFIX}/lib/libmha.so.1.2.0" )

# Commands beyond this point should not need to know the version.
set(CMAKE_IMPORT_FILE_VERSION)
