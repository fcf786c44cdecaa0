"""The per-picture facts the index pass gathers for the stages after it (`BsonIndex`'s default).

The conversion to RecordIO places every record before it writes any, so it must know each
record's size from the index alone, and which pictures to leave out. Two facts give that, one
number per picture, mostly 0:

* `RECORDIO_MAGIC_WORDS`: the 4-byte-aligned RecordIO magic words in the picture (each makes
  its record 4 bytes longer, see `data.recordio`);
* `JPEG_PROBLEMS`: why the picture will not decode (a `data.jpeg` problem code).

The index pass computes them as it reads each picture (`data.bson_scan.PictureFact`: many
pictures of a read buffer at once, or the pictures of a document pymongo decoded), so they cost
no read of their own. The index knows none of them: it keeps each as a sparse column under
the fact's name, and a cached index without a column a caller asks for is built again. A new
fact is one more entry here, not a new index format.
"""
import numpy as np

from data.bson_scan import PictureFact
from data.jpeg import jpeg_problems
from data.recordio import aligned_magic_counts, aligned_magic_words
from data.rows import first_rows


def _decoded_magic_words(pictures):
    return np.array([aligned_magic_words(p) for p in pictures], np.int64)


def _decoded_problems(pictures):
    lengths = [len(p) for p in pictures]
    return jpeg_problems(b"".join(pictures), first_rows(lengths)[:-1], lengths)


RECORDIO_MAGIC_WORDS = PictureFact("magic", np.int64, aligned_magic_counts, _decoded_magic_words)
JPEG_PROBLEMS = PictureFact("undecodable", np.uint8, jpeg_problems, _decoded_problems,
                            summary_key="undecodable_pictures")
CONVERSION_FACTS = (RECORDIO_MAGIC_WORDS, JPEG_PROBLEMS)
