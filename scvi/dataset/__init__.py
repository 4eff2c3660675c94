"""Datasets: the GeneExpressionDataset container, AnnData conversion, synthetic and built-in loaders."""
# The core container first: the loaders' modules import it.
from .dataset import CellMeasurement, DownloadableDataset, GeneExpressionDataset  # noqa: E402
from .anndataset import AnnDatasetFromAnnData  # noqa: E402
# Built-in downloadable datasets and the download settings (engineer E).
from ._download import DownloadError, get_data_mirror, set_data_mirror  # noqa: E402
from .anndataset import DownloadableAnnDataset  # noqa: E402
from .brain_large import BrainLargeDataset  # noqa: E402
from .cite_seq import CbmcDataset, CiteSeqDataset  # noqa: E402
from .cortex import CortexDataset  # noqa: E402
from .csv import BreastCancerDataset, CsvDataset, MouseOBDataset  # noqa: E402
from .dataset10X import BrainSmallDataset, Dataset10X  # noqa: E402
from .hemato import HematoDataset  # noqa: E402
from .loom import FrontalCortexDropseqDataset, LoomDataset, PreFrontalCortexStarmapDataset, RetinaDataset  # noqa: E402
from .pbmc import PbmcDataset, PurifiedPBMCDataset  # noqa: E402
from .seqfish import SeqfishDataset  # noqa: E402
from .seqfishplus import SeqFishPlusDataset  # noqa: E402
from .smfish import SmfishDataset  # noqa: E402
# Synthetic datasets (engineer A2).
from .synthetic import SyntheticDataset, SyntheticDatasetCorr, SyntheticRandomDataset, ZISyntheticDatasetCorr  # noqa: E402
