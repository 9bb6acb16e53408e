# LibTorch helpers. <torch/torch.h> costs ~30 s of parsing per translation unit on a small machine;
# it is precompiled once (quartet_torch_pch) and every LibTorch target reuses that PCH, which needs
# identical compile options, so every LibTorch target is declared through quartet_torch_target().

if(NOT QUARTET_BUILD_WORKER)
  return()
endif()

# The libraries whose interface definitions reach every LibTorch target: they must match the PCH's.
set(QUARTET_TORCH_BASE_LIBS ${TORCH_LIBRARIES} absl::status absl::statusor absl::strings spdlog::spdlog)

add_library(quartet_torch_pch STATIC ${CMAKE_SOURCE_DIR}/cmake/torch_pch.cc)
target_link_libraries(quartet_torch_pch PUBLIC ${QUARTET_TORCH_BASE_LIBS})
target_compile_options(quartet_torch_pch PUBLIC -Winvalid-pch)
if(QUARTET_TORCH_PCH)
  target_precompile_headers(quartet_torch_pch PRIVATE <torch/torch.h>)
endif()

# quartet_torch_target(<target>): links LibTorch and reuses the shared PCH.
function(quartet_torch_target target)
  target_link_libraries(${target} PUBLIC ${QUARTET_TORCH_BASE_LIBS})
  target_compile_options(${target} PRIVATE -Winvalid-pch)
  if(QUARTET_TORCH_PCH)
    target_precompile_headers(${target} REUSE_FROM quartet_torch_pch)
  endif()
endfunction()
