"""CIFAR-10, python version, read into uint8 tensors once.

``load_cifar10(root, download)`` returns ``(x_train, y_train, x_test, y_test)`` as uint8 NCHW images
and int64 labels. ``root`` is the folder that holds ``cifar-10-batches-py/`` (torchvision's
convention), or that folder itself.

A data folder is not trusted code. The batch files are pickles, so they are read with an
unpickler that resolves only the three numpy names a CIFAR batch needs to rebuild its array;
anything else in the file (a planted ``os.system``, say) is refused and nothing runs. Shapes,
dtypes and label ranges are checked, and a bad file is named in the error.

If the folder is missing and ``download`` is true, the official archive is fetched with a progress
bar, its MD5 checked, and unpacked with every member checked to land inside ``root``.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILES = ["test_batch"]


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes, numbers and numpy arrays; refuses every other global."""


    def find_class(self, module: str, name: str):
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            return _numpy_reconstruct()
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if (module, name) == ("_codecs", "encode"):  # protocol-2 pickles made by Python 3 wrap bytes in it
            import codecs

            return codecs.encode
        raise pickle.UnpicklingError(f"refusing to load '{module}.{name}': not plain array data")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file -> (uint8 N x 3 x 32 x 32, int64 N), validated."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except FileNotFoundError:
        raise UserError(f"CIFAR-10 file missing: {path}. Re-download or rebuild the data folder.") from None
    except Exception as e:  # truncated, corrupt or malicious pickles all end here
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"cannot read CIFAR-10 file {path}: {first}. Replace the file with a fresh copy.") from None
    if not isinstance(obj, dict):
        raise UserError(f"CIFAR-10 file {path} holds a {type(obj).__name__}, not a batch dict")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = obj.get("data"), obj.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise UserError(f"CIFAR-10 file {path}: 'data' must be an N x 3072 uint8 array, got {shape}")
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError):  # ragged or odd objects
        labels = np.asarray([])
    if labels.dtype.kind not in "iu" or labels.shape != (data.shape[0],) or labels.min() < 0 or labels.max() > 9:
        raise UserError(f"CIFAR-10 file {path}: 'labels' must be {data.shape[0]} ints in 0..9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def find_folder(root: Path) -> Path:
    root = root.expanduser()
    return root if root.name == FOLDER or (root / "test_batch").exists() else root / FOLDER


def load_cifar10(root: str | Path, download: bool) -> tuple[torch.Tensor, ...]:
    folder = find_folder(Path(root))
    if not folder.exists():
        if not download:
            raise UserError(
                f"no CIFAR-10 at {folder}. Set data.root to the folder that holds {FOLDER}/ "
                "(e.g. data.root=~/datasets/cifar10) or allow data.download=true."
            )
        download_cifar10(folder.parent)
    parts = [[read_batch(folder / name) for name in names] for names in (TRAIN_FILES, TEST_FILES)]
    out = []
    for batches in parts:
        out.append(torch.from_numpy(np.concatenate([x for x, _ in batches])))
        out.append(torch.from_numpy(np.concatenate([y for _, y in batches])))
    return tuple(out)


def download_cifar10(root: Path, url: str = URL, md5: str = MD5) -> None:
    """Fetch, verify and unpack the official archive into ``root``."""
    from tqdm import tqdm

    root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=root, prefix=".cifar10-", suffix=".tar.gz", delete=False) as tmp:
        archive = Path(tmp.name)
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc="CIFAR-10") as bar:
                    while chunk := response.read(1 << 20):
                        tmp.write(chunk)
                        bar.update(len(chunk))
        except OSError as e:
            archive.unlink(missing_ok=True)
            raise UserError(
                f"could not download CIFAR-10 from {url} ({e}). Offline? Set data.root to a folder "
                f"that holds {FOLDER}/ and data.download=false."
            ) from None
    try:
        if file_md5(archive) != md5:
            raise UserError(f"downloaded CIFAR-10 archive fails its MD5 check ({url}); try again")
        safe_extract(archive, root)
    finally:
        archive.unlink(missing_ok=True)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def safe_extract(archive: Path, root: Path) -> None:
    """Unpack regular files and folders only, each landing inside ``root``; refuse anything else."""
    root = root.resolve()
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:
            target = (root / m.name).resolve()
            if not (m.isfile() or m.isdir()) or not target.is_relative_to(root):
                raise UserError(f"refusing archive member {m.name!r}: it would land outside {root}")
        for m in members:
            tar.extract(m, root, set_attrs=False, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
