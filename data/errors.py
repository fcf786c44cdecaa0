"""Input errors of the data stages, each naming the file, the byte offset and the product."""
import contextlib
import dataclasses
import logging
import zipfile

# What numpy raises for a truncated or garbage `.npz` file; none of it names the file.
NPZ_ERRORS = (ValueError, KeyError, EOFError, zipfile.BadZipFile)


class DataInputError(ValueError):
    """Bad input data. `path`, `offset` and `product_id` locate it (None where unknown)."""

    def __init__(self, path, offset, product_id, reason):
        self.path, self.offset, self.product_id, self.reason = path, offset, product_id, reason
        where = f"{path}: offset {offset}" if offset is not None else f"{path}"
        if product_id is not None:
            where += f", product {product_id}"
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        # Rebuild from the four fields (the default would pass only the message), so the
        # error crosses process boundaries (multiprocessing workers) intact.
        return type(self), (self.path, self.offset, self.product_id, self.reason)

    def as_dict(self):
        return {"path": self.path, "offset": self.offset, "product_id": self.product_id, "reason": self.reason}


class BsonFormatError(DataInputError):
    """A document that is not a valid Kaggle product (truncated, corrupt, missing keys, duplicate id)."""


class StaleIndexError(BsonFormatError):
    """A document that no longer matches the file's cached index: the file changed after it
    was indexed (rebuild the index: `python -m data.bson_index --rebuild FILE`)."""

    HINT = "the file no longer matches its index: was it modified after indexing?"

    def __init__(self, path, offset, product_id, reason):
        if self.HINT not in reason:
            reason = f"{reason}; {self.HINT}"
        super().__init__(path, offset, product_id, reason)


class PictureError(DataInputError):
    """A picture that will not decode (`data.jpeg`): `image` is its number in the product's `imgs`."""

    def __init__(self, path, offset, product_id, image, reason):
        self.image, self.picture_reason = image, reason
        super().__init__(path, offset, product_id, f"imgs[{image}] {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.offset, self.product_id, self.image, self.picture_reason)

    def as_dict(self):
        return dict(super().as_dict(), image=self.image)


@contextlib.contextmanager
def reading_npz(path, what):
    """Errors of reading `path`, which should be a `what` (e.g. "split file"), that say only
    what numpy found wrong (a truncated or garbage file) become a `DataInputError` naming it."""
    try:
        yield
    except DataInputError:
        raise
    except NPZ_ERRORS as error:
        raise DataInputError(path, None, None, f"not a readable {what}: {error}") from error


@dataclasses.dataclass(frozen=True)
class SkipBad:
    """What a stage does with a piece of bad input: without `skip` (the default everywhere:
    bad input must not pass unnoticed) the first located error raises; with it (`--skip-bad`)
    each one is logged on `log` and recorded in `records` (what the stage reports), and the
    stage goes on without the bad piece."""
    skip: bool
    log: logging.Logger
    records: list = dataclasses.field(default_factory=list)

    def handle(self, error, record=None):
        """Raise `error`, or with `skip` log it and record `record` (default: its `as_dict()`)."""
        if not self.skip:
            raise error
        self.log.warning("skipping: %s", error)
        self.records.append(error.as_dict() if record is None else record)

    def to_handle(self, items):
        """The items of which each is an error to `handle`: all with `skip`, else the first
        (which raises), so that nothing is built for errors that can never be reported."""
        return items if self.skip else items[:1]
