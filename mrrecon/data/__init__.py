"""Data: the Sample type, file readers/writers, paired multi-contrast data, the simulator, datasets."""

from mrrecon.data.datasets import (
    PairedSliceDataset,
    SliceDataset,
    samples_from_file,
    undersample,
)
from mrrecon.data.fastmri import FastMRIFile, center_crop, read_fastmri_volume, write_fastmri_h5, write_reconstruction
from mrrecon.data.formats import load_sample_source, read_array, read_cfl, write_array, write_cfl
from mrrecon.data.paired import find_pairs
from mrrecon.data.sample import Batch, Sample, SampleMeta, collate_samples

__all__ = [
    "Batch", "FastMRIFile", "PairedSliceDataset", "Sample", "SampleMeta", "SliceDataset", "center_crop",
    "collate_samples", "find_pairs", "load_sample_source", "read_array", "read_cfl", "read_fastmri_volume",
    "samples_from_file", "undersample", "write_array", "write_cfl", "write_fastmri_h5", "write_reconstruction",
]
