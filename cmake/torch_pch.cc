// Translation unit that owns the precompiled <torch/torch.h> (see cmake/QuartetTorch.cmake).
