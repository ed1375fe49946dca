"""Evaluation: compare reconstructions with references (folders of fastMRI h5 files) and benchmarks."""
