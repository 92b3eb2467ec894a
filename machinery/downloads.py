"""Files fetched once and checked: a local copy verified against its published MD5, or downloaded
atomically (MD5-checked as it streams) from the first address that answers; without network, a
message that says where to get the file and where to put it."""
import hashlib
import os
import urllib.error
import urllib.request

from machinery import durable

DOWNLOAD_TIMEOUT_SECONDS = 60


class DownloadError(Exception):
    """A file that is missing and cannot be fetched, or is not the published one: one line
    naming it."""


def md5sum(path, chunk_size=1 << 20):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(folder, filename, md5, base_urls, verify, download):
    """Returns the path of a verified local copy of `filename` in `folder`, downloading it from
    the first of `base_urls` (each + filename) that works if it is missing.

    Args:
      verify: compare an existing file's MD5 with `md5` (a download is always checked).
      download: fetch a missing file; if False, a missing file is an error.

    Raises:
      DownloadError: checksum mismatch, a missing file with downloading off, or every address
        failed; the message says how to place the file by hand.
    """
    path = os.path.join(folder, filename)
    urls = [base + filename for base in base_urls]
    by_hand = (f"To place it by hand, download {urls[0]} and save it as {os.path.abspath(path)}"
               f" (expected MD5 {md5}).")
    if os.path.exists(path):
        found = md5sum(path) if verify else md5
        if found != md5:
            raise DownloadError(f"{path}: checksum mismatch (MD5 {found}, expected {md5}); "
                                f"the file is corrupt or not the published one. Delete it to "
                                f"download it again. {by_hand}")
        return path
    if not download:
        raise DownloadError(f"{path}: file not found and downloading is off. {by_hand}")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"{folder}: cannot create the data folder "
                            f"({error.strerror})") from None
    failures = []
    for url in urls:
        try:
            download_file(url, path, md5 if verify else None)
            return path
        except DownloadError as error:
            failures.append(str(error))
    raise DownloadError(f"{path}: download failed: {'; '.join(failures)}. {by_hand}")


def download_file(url, path, md5=None):
    """Downloads url to path atomically (atomic_write), MD5-checked while it streams: the file
    appears at `path` only when complete and correct.

    A killed or failed download leaves no file at `path` that a later run would trust.

    Raises:
      DownloadError: network failure or checksum mismatch (naming the URL).
    """
    from tqdm import tqdm  # imported here: only a download needs it

    def stream(handle):
        digest = hashlib.md5()
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=os.path.basename(path),
                      leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    handle.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        if md5 is not None and digest.hexdigest() != md5:
            raise DownloadError(f"{url}: checksum mismatch (MD5 {digest.hexdigest()}, "
                                f"expected {md5})")

    try:
        durable.atomic_write(path, stream)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DownloadError(f"{url}: {getattr(error, 'reason', None) or error}") from None
