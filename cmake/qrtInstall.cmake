# `cmake --install`: the library (the static libraries of every layer, or libqrt.so), the public
# headers, the qrt command, and a CMake package (qrtConfig.cmake, qrtConfigVersion.cmake,
# qrtTargets.cmake) so that find_package(qrt) gives qrt::qrt.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(qrt_package_dir ${CMAKE_INSTALL_LIBDIR}/cmake/qrt)
if(QRT_SHARED)
  set(qrt_installed_libraries qrt)
else()
  set(qrt_installed_libraries qrt ${QRT_LIBRARIES})
endif()
install(TARGETS ${qrt_installed_libraries} EXPORT qrtTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/qrt ${PROJECT_BINARY_DIR}/include/qrt
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
if(TARGET qrt_cli)
  install(TARGETS qrt_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

install(EXPORT qrtTargets NAMESPACE qrt:: DESTINATION ${qrt_package_dir})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/qrtConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/qrtConfig.cmake INSTALL_DESTINATION ${qrt_package_dir})
# Before 1.0 a new minor version may change the API: only the same major.minor is compatible.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/qrtConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/qrtConfig.cmake ${PROJECT_BINARY_DIR}/qrtConfigVersion.cmake
        DESTINATION ${qrt_package_dir})
