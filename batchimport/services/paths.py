"""Import paths are confined to settings.DATA_ROOT (symlinks resolved)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.utils.translation import gettext

from etl.errors import DomainError


def data_root() -> Path:
    return Path(settings.DATA_ROOT).resolve()


def path_resolve(*, path: str | Path, must_exist: bool = True) -> Path:
    """`path` (relative to DATA_ROOT, or absolute inside it) resolved, or a
    DomainError (HTTP 400) when it points outside — through `..`, an absolute
    path elsewhere or a symlink leading out — or does not exist."""
    text = str(path).strip()
    if not text:
        raise DomainError(gettext("path is required"), code="path_required")
    _refuse_unusable(text)
    root = data_root()
    try:
        resolved = _resolved(root, Path(text))
        if resolved != root and root not in resolved.parents:
            raise DomainError(
                gettext("path %(path)s is outside the data root %(root)s (imports may only read below it)")
                % {"path": _shown(text), "root": root},
                code="path_outside_root",
            )
        exists = resolved.exists()
    except (OSError, ValueError) as exc:  # a name too long for the file system, a link loop
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise DomainError(
            gettext("path %(path)s cannot be used: %(reason)s") % {"path": _shown(text), "reason": reason},
            code="path_invalid",
        ) from None
    if must_exist and not exists:
        raise DomainError(
            gettext("path %(path)s does not exist under the data root %(root)s") % {"path": _shown(text), "root": root},
            code="path_not_found",
        )
    return resolved


def _resolved(root: Path, candidate: Path) -> Path:
    if not candidate.is_absolute():
        # relative to DATA_ROOT; or, when only that exists, to the working folder
        # (`make demo` passes var/data/sample), still confined below
        in_root, in_cwd = root / candidate, Path.cwd() / candidate
        candidate = in_cwd if not in_root.exists() and in_cwd.exists() else in_root
    return candidate.resolve(strict=False)


def _refuse_unusable(text: str) -> None:
    """Refuse what no file system accepts before asking one (a NUL, a path past the limit)."""
    if "\x00" in text:
        raise DomainError(gettext("path must not contain a NUL byte"), code="path_invalid")
    limit = getattr(settings, "IMPORT_MAX_PATH_LENGTH", 1024)
    length = len(text.encode("utf-8", "surrogatepass"))
    if length > limit:
        raise DomainError(
            gettext("path is %(length)s bytes long; the limit is %(limit)s") % {"length": length, "limit": limit},
            code="path_too_long",
        )


def _shown(text: str) -> str:
    """The path as an error message quotes it (a long one shortened)."""
    return repr(text if len(text) <= 200 else text[:200] + "…")


def relative_to_root(path: Path, *, root: Path | None = None) -> str:
    """`path` relative to DATA_ROOT (`root`, when the caller resolved it already), else as it is."""
    try:
        return str(path.relative_to(root or data_root()))
    except ValueError:
        return str(path)


def upload_store(*, upload: UploadedFile, market: str) -> str:
    """Store an uploaded file under DATA_ROOT/uploads/<MARKET>/ (name sanitised); its path there."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", upload.name).lstrip(".")[:200] or "upload.csv"
    folder = data_root() / "uploads" / market
    target = folder / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            for chunk in upload.chunks():
                handle.write(chunk)
    except OSError as exc:  # the data folder is full, read-only or not a folder: say so, keep no half file
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        raise DomainError(
            gettext("cannot store the upload under the data root: %(reason)s") % {"reason": exc.strerror or exc},
            code="data_root_unwritable",
            status_code=503,
        ) from None
    return str(target)
