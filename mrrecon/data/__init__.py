"""Data: the Sample type, file readers/writers, paired multi-contrast data, the simulator, datasets."""

from mrrecon.data.sample import Sample, SampleMeta

__all__ = ["Sample", "SampleMeta"]
