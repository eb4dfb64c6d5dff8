# Install rules and the CMake package: `cmake --install` puts the headers, libcomba_ops,
# libcomba_nn, libcomba_io and CombaConfig.cmake under the prefix, so that another
# project writes
#   find_package(Comba REQUIRED)
#   target_link_libraries(app PRIVATE Comba::comba)      # operator + nn modules
#   target_link_libraries(app PRIVATE Comba::io)         # + model folders, tokenizers
# Torch reaches consumers as the imported target `torch` (CombaConfig finds it with
# find_dependency), never as absolute paths; spdlog because the static logging library
# behind comba_core links it.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(COMBA_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/Comba)

# Installed shared libraries find each other and LibTorch without LD_LIBRARY_PATH
# (RUNPATH is not inherited: libcomba_ops itself must name torch's library folder).
get_filename_component(COMBA_TORCH_LIBDIR "${TORCH_LIBRARY}" DIRECTORY)
set(COMBA_INSTALL_RPATH "$ORIGIN" "${COMBA_TORCH_LIBDIR}")
if(COMBA_HAS_CUDA AND CMAKE_CUDA_COMPILER_TOOLKIT_ROOT)
  list(APPEND COMBA_INSTALL_RPATH "${CMAKE_CUDA_COMPILER_TOOLKIT_ROOT}/lib64")
endif()
set_target_properties(comba_ops comba_nn comba_io PROPERTIES
  INSTALL_RPATH "${COMBA_INSTALL_RPATH}"
  INSTALL_RPATH_USE_LINK_PATH ON)

install(TARGETS comba_torch comba_log comba_files comba_core comba_ops comba_nn comba comba_io_base comba_io
  EXPORT CombaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
# The SentencePiece plugin (io/CMakeLists.txt): loaded at run time from beside
# libcomba_io, so it goes to the same folder; not part of the exported targets.
if(TARGET comba_sentencepiece)
  install(TARGETS comba_sentencepiece LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
install(DIRECTORY
    ${PROJECT_SOURCE_DIR}/core/include/
    ${PROJECT_SOURCE_DIR}/ops/include/
    ${PROJECT_SOURCE_DIR}/nn/include/
    ${PROJECT_SOURCE_DIR}/io/include/
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
  FILES_MATCHING PATTERN "*.h")
install(EXPORT CombaTargets NAMESPACE Comba:: DESTINATION ${COMBA_INSTALL_CMAKEDIR})

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/CombaConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/CombaConfig.cmake
  INSTALL_DESTINATION ${COMBA_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/CombaConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES
    ${CMAKE_CURRENT_BINARY_DIR}/CombaConfig.cmake
    ${CMAKE_CURRENT_BINARY_DIR}/CombaConfigVersion.cmake
  DESTINATION ${COMBA_INSTALL_CMAKEDIR})
