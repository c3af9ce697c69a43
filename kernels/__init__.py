"""Triton kernels, each with a torch reference and an autograd wrapper."""
