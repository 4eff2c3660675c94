"""A local HTTP server on 127.0.0.1 serving the legacy fixture files under the original URLs' paths.

Dataset URL ``https://host/path?query`` is served at ``/host/path?query``, which is where
``scvi.dataset.set_data_mirror(server.url)`` makes the loaders look. Unknown paths get a 404, so a
test can never reach the internet through it. Paths can also be made to fail: ``truncate`` sends
the headers of the whole file then closes the connection half-way, ``stall`` sends nothing for a
while (to trigger the client's timeout).
"""
import http.server
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Dict, List, Set

import pytest

from scvi.dataset import set_data_mirror
from scvi.dataset.dataset10X import tenx_source

# Original URL -> fixture file (relative to shared/data/legacy-fixtures).
LEGACY_URLS = {
    "https://storage.googleapis.com/linnarsson-lab-www-blobs/blobs/cortex/expression_mRNA_17-Aug-2014.txt": (
        "expression.bin"
    ),
    "http://cf.10xgenomics.com/samples/cell-exp/1.3.0/1M_neurons/1M_neurons_filtered_gene_bc_matrices_h5.h5": (
        "brain_large.h5"
    ),
    "https://github.com/YosefLab/scVI-data/raw/master/retina.loom": "retina.loom",
    "https://github.com/YosefLab/scVI-data/raw/master/fc-dropseq.loom": "fc-dropseq.loom",
    "https://github.com/YosefLab/scVI-data/raw/master/mpfc-starmap.loom": "mpfc-starmap.loom",
    "http://linnarssonlab.org/osmFISH/osmFISH_SScortex_mouse_all_cells.loom": "osmFISH_SScortex_mouse_all_cell.loom",
    "https://www.cell.com/cms/attachment/2080562255/2072099886/mmc6.xlsx": "SeqFISH.xlsx",
    "https://github.com/CaiGroup/seqFISH-PLUS/raw/master/sourcedata.zip": "seqfishplus.zip",
    "http://www.spatialtranscriptomicsresearch.org/wp-content/uploads/2016/07/Layer2_BC_count_matrix-1.tsv": (
        "Layer2_BC_count_matrix-1.tsv"
    ),
    "http://www.spatialtranscriptomicsresearch.org/wp-content/uploads/2016/07/Rep11_MOB_count_matrix-1.tsv": (
        "Rep11_MOB_count_matrix-1.tsv"
    ),
    "https://github.com/YosefLab/scVI-data/raw/master/brain_small_metadata.pickle": "brain_small_metadata.pickle",
    "https://github.com/YosefLab/scVI-data/raw/master/gene_info.csv": "gene_info_pbmc.csv",
    "https://github.com/YosefLab/scVI-data/raw/master/pbmc_metadata.pickle": "pbmc_metadata.pickle",
    "https://www.ncbi.nlm.nih.gov/geo/download/?acc=GSM2388072&format=file&"
    "file=GSM2388072%5Fbasal%5Fbone%5Fmarrow%2Eraw%5Fumifm%5Fcounts%2Ecsv%2Egz": "HEMATO/bBM.raw_umifm_counts.csv.gz",
    "https://github.com/romain-lopez/scVI-reproducibility/raw/master/additional/data.zip": "HEMATO/data.zip",
    # extra files used by the tests of the generic loaders (any URL works through the mirror)
    "https://example.org/data/Cortex.loom": "Cortex.loom",
    "https://example.org/data/TM_droplet_mat.h5ad": "TM_droplet_mat.h5ad",
    "https://example.org/data/GSE100866_CBMC_8K_13AB_10X-RNA_umi.csv.gz": "GSE100866_CBMC_8K_13AB_10X-RNA_umi.csv.gz",
}

_GEO = "ftp://ftp.ncbi.nlm.nih.gov/geo/series/GSE100nnn/GSE100866/suppl/GSE100866_{}-{}.csv.gz"
for _name, _series in (("cbmc", "CBMC_8K_13AB_10X"), ("pbmc", "PBMC_vs_flow_10X")):
    LEGACY_URLS[_GEO.format(_series, "RNA_umi")] = f"citeSeq/{_name}/{_name}_rna.csv.gz"
    LEGACY_URLS[_GEO.format(_series, "ADT_umi")] = f"citeSeq/{_name}/{_name}_adt.csv.gz"
    LEGACY_URLS[_GEO.format(_series, "ADT_clr-transformed")] = f"citeSeq/{_name}/{_name}_adt_centered.csv.gz"


def tenx_urls(fixtures: Path) -> Dict[str, str]:
    """The 10x datasets that have a fixture archive, by URL."""
    urls = {}
    for folder in sorted((fixtures / "10X").iterdir()):
        url, filename = tenx_source(folder.name)
        if (folder / filename).exists():
            urls[url] = f"10X/{folder.name}/{filename}"
    return urls


def mirror_path(url: str) -> str:
    """Request path at which the mirror serves ``url``: ``/host/path[?query]``."""
    parts = urllib.parse.urlsplit(url)
    return "/" + parts.netloc + parts.path + ("?" + parts.query if parts.query else "")


class MirrorServer:
    """Threaded HTTP server on 127.0.0.1 (an ephemeral port) with a table of routes."""

    def __init__(self):
        self.routes: Dict[str, Path] = {}
        self.truncate: Set[str] = set()
        self.stall: Dict[str, float] = {}
        self.requests: List[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                server.requests.append(self.path)
                if self.path in server.stall:
                    time.sleep(server.stall[self.path])
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404, "Not Found")
                    return
                body = route.read_bytes()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if self.path in server.truncate:
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
                    self.close_connection = True

            def log_message(self, format, *args):  # keep the test output clean
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, url: str, path: Path) -> None:
        """Serve ``path`` where the mirror looks for ``url``."""
        self.routes[mirror_path(url)] = Path(path)

    def requested(self, url: str) -> int:
        """How many times ``url`` was requested."""
        return self.requests.count(mirror_path(url))

    def start(self) -> "MirrorServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def mirror_server(legacy_fixtures):
    """The server, with every legacy URL routed to its fixture file."""
    server = MirrorServer()
    for url, relative in {**LEGACY_URLS, **tenx_urls(legacy_fixtures)}.items():
        server.add(url, legacy_fixtures / relative)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def mirror(mirror_server, monkeypatch):
    """The mirror in force for one test (and no ``$SCVI_DATA_MIRROR`` from the environment)."""
    monkeypatch.delenv("SCVI_DATA_MIRROR", raising=False)
    set_data_mirror(mirror_server.url)
    mirror_server.requests.clear()
    yield mirror_server
    set_data_mirror(None)
