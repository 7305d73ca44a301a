# libtorch from the torch wheel, for CPU inference: what serving/cpp and serving/cpp/aoti share.
#
#   include(${CMAKE_CURRENT_LIST_DIR}/cmake/DeployLstmTorch.cmake)   # instead of find_package(Torch)
#   target_link_libraries(my_target PRIVATE deploy_lstm::torch)     # instead of ${TORCH_LIBRARIES}
#
# Works with a CPU wheel (torch 2.13.0+cpu) and with a CUDA wheel on a machine without the CUDA
# toolkit (torch 2.14.1, the default Linux wheel):
#
# * CUDA.  libtorch's CMake for a CUDA build looks for the CUDA toolkit (Caffe2Config.cmake ->
#   public/cuda.cmake -> find_package(CUDA)) and stops without one ("Your installed Caffe2 version
#   uses CUDA but I cannot find the CUDA libraries"); with the toolkit, ${TORCH_LIBRARIES} links
#   libtorch_cuda and wants CUDA_nvrtc_LIBRARY.  These programs run on the CPU, so by default
#   (DEPLOY_LSTM_TORCH_CUDA=OFF) the CUDA part is never looked for: a stand-in torch::cudart target
#   makes cuda.cmake return at its include guard ("if(TARGET torch::cudart) return()"), and
#   deploy_lstm::torch links only the wheel's CPU libraries (torch_cpu, c10) -- which is all a CPU
#   wheel has anyway.  libtorch_cpu of a CUDA wheel still needs libcudart/libcupti at run time; its
#   RPATH finds them in the wheel's nvidia-* packages.  -DDEPLOY_LSTM_TORCH_CUDA=ON runs libtorch's
#   CMake unchanged and links ${TORCH_LIBRARIES} (needs the toolkit: -DCUDA_TOOLKIT_ROOT_DIR=...).
# * C++ standard.  torch's headers need C++17 up to 2.13 and C++20 from 2.14 ("#error C++20 or
#   later compatible compiler is required"): CMAKE_CXX_STANDARD is set from the torch version
#   unless given, and a given one that is too old stops here with what to do.
cmake_minimum_required(VERSION 3.18)

option(DEPLOY_LSTM_TORCH_CUDA
       "Link libtorch's CUDA libraries too (needs the CUDA toolkit); OFF: the CPU libraries only" OFF)

if(NOT DEPLOY_LSTM_TORCH_CUDA AND NOT TARGET torch::cudart)
  add_library(torch::cudart INTERFACE IMPORTED)
endif()
find_package(Torch REQUIRED)

# The C++ standard torch's headers need.
if(Torch_VERSION VERSION_GREATER_EQUAL 2.14)
  set(_deploy_lstm_cxx_std 20)
else()
  set(_deploy_lstm_cxx_std 17)
endif()
if(NOT DEFINED CMAKE_CXX_STANDARD)
  set(CMAKE_CXX_STANDARD ${_deploy_lstm_cxx_std})
elseif(CMAKE_CXX_STANDARD LESS _deploy_lstm_cxx_std)
  message(FATAL_ERROR "torch ${Torch_VERSION}'s headers need C++${_deploy_lstm_cxx_std}, but CMAKE_CXX_STANDARD is "
                      "${CMAKE_CXX_STANDARD}: drop -DCMAKE_CXX_STANDARD (it follows torch) or give "
                      "-DCMAKE_CXX_STANDARD=${_deploy_lstm_cxx_std}")
endif()
if(NOT "cxx_std_${CMAKE_CXX_STANDARD}" IN_LIST CMAKE_CXX_COMPILE_FEATURES)
  message(FATAL_ERROR "torch ${Torch_VERSION}'s headers need C++${CMAKE_CXX_STANDARD}, which "
                      "${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION} (${CMAKE_CXX_COMPILER}) does not "
                      "support: use g++ >= 10 or clang++ >= 10 (-DCMAKE_CXX_COMPILER=...)")
endif()
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)

# deploy_lstm::torch: what the programs link.
if(NOT TARGET deploy_lstm_torch)
  add_library(deploy_lstm_torch INTERFACE)
  add_library(deploy_lstm::torch ALIAS deploy_lstm_torch)
  if(DEPLOY_LSTM_TORCH_CUDA)
    target_link_libraries(deploy_lstm_torch INTERFACE ${TORCH_LIBRARIES})
  else()
    # torch_cpu_library: libtorch_cpu.so linked --no-as-needed (its operators register when it
    # loads) with its compile definitions; the C++ API's headers are in TORCH_INCLUDE_DIRS.
    target_link_libraries(deploy_lstm_torch INTERFACE torch_cpu_library c10)
    target_include_directories(deploy_lstm_torch INTERFACE ${TORCH_INCLUDE_DIRS})
    if(TORCH_CXX_FLAGS)
      separate_arguments(_deploy_lstm_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
      target_compile_options(deploy_lstm_torch INTERFACE ${_deploy_lstm_torch_flags})
    endif()
  endif()
endif()

set(_deploy_lstm_cuda_note "CPU libraries only")
if(DEPLOY_LSTM_TORCH_CUDA)
  set(_deploy_lstm_cuda_note "with CUDA libraries")
endif()
message(STATUS "deploy-lstm: torch ${Torch_VERSION} (${TORCH_INSTALL_PREFIX}), C++${CMAKE_CXX_STANDARD}, "
               "${_deploy_lstm_cuda_note}")
