"""Decoder stage: JPEG bytes of a product -> RGB pixels of its test-time views, MD5s, counts.

Pictures are decoded to the run's decoded size (`Views.size`, see data.images);
the model worker brings them to each model's own input.

Test-time augmentation (`Views`): the image itself, plus optionally its horizontal mirror
(``flip``, what the reference used) and five crops (``crops``: the four corners and the
centre, `crop_size` pixels wide, scaled back to the image size), and with both, the
mirror of each crop. Every view of an image is predicted and the image's vector is the
mean over its views.

Undecodable images (random bytes, a truncated or an empty picture): without `skip_bad`
the product's error names file, place, product and image. With `skip_bad` the image is
left out of its product's combination (the product's other images decide) and reported;
a product without any decodable image gets the fallback vector, the training class prior
(see predict.aggregate). Either way every product gets one row.

MD5s are taken from the untouched JPEG bytes (`data.md5_dict.image_md5`), bad images
included, and give the product hash (`data.md5_dict.product_hash`) and, with an MD5
dictionary, each image's training category counts for the MD5 modes.

With ``--decode-on device`` (`DECODE_ON`) the decoders do all of the above but the
decoding: `check_products` checks each picture's structure (`data.jpeg`'s check, on the
pictures of several products at once; bad ones are handled as above) and forwards the
JPEG bytes of the others, which the PyTorch model worker decodes a batch at a time on its
device (predict.torch_runner). A picture that the device's decoder refuses is decoded by
OpenCV there (models.torch_nets.images.decode_on_device): in both decode places a picture is
good where OpenCV decodes it. One that passes the check and that OpenCV cannot decode either
is handled as above too, by the model worker, with the product's place
(`DecodedProduct.where`).
"""
from dataclasses import dataclass, field, replace

import numpy as np

from data.images import KAGGLE_IMAGE_SHAPE, decode_rgb, resize
from data.jpeg import describe, jpeg_problems
from data.md5_dict import image_md5, product_hash
from predict.sources import Product

TTA_CHOICES = ("none", "flip", "crops", "flip,crops")
# Where pictures are decoded: by the decoder processes (OpenCV), or by the PyTorch model
# worker on its device (nvJPEG on a GPU, libjpeg-turbo on the CPU; predict.torch_runner).
DECODE_ON = ("decoders", "device")


@dataclass(frozen=True)
class Views:
    """Which test-time views to predict, and the ``size`` (height, width) pictures are
    decoded to (data.images.decoded_size: the run's largest model input)."""
    flip: bool = False
    crops: bool = False
    crop_size: int = 160
    size: tuple = KAGGLE_IMAGE_SHAPE[1:]

    @classmethod
    def parse(cls, text, crop_size=160):
        parts = {p.strip() for p in text.split(",") if p.strip()} - {"none"}
        unknown = parts - {"flip", "crops"}
        if unknown:
            raise ValueError(f"unknown test-time view(s) {sorted(unknown)}; choose from {', '.join(TTA_CHOICES)}")
        return cls("flip" in parts, "crops" in parts, crop_size).at_size(KAGGLE_IMAGE_SHAPE[1:])

    def at_size(self, size):
        """These views of pictures decoded to ``size``; the crops must fit in it."""
        if self.crops and not 0 < self.crop_size < min(size):
            raise ValueError(f"crop size must be between 0 and the image size {min(size)}, not {self.crop_size}")
        return replace(self, size=tuple(size))

    @property
    def count(self):
        return (1 + 5 * self.crops) * (1 + self.flip)

    def describe(self):
        return ",".join(["flip"] * self.flip + [f"crops{self.crop_size}"] * self.crops) or "none"

    def of(self, rgb):
        """The ``(count, height, width, 3)`` uint8 views of one RGB image (already at `size`)."""
        views = [rgb]
        if self.crops:
            (h, w), c = rgb.shape[:2], self.crop_size
            corners = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), ((h - c) // 2, (w - c) // 2)]
            views += [resize(rgb[y:y + c, x:x + c], (h, w)) for y, x in corners]
        if self.flip:
            views += [v[:, ::-1] for v in views]
        return np.stack(views)


@dataclass
class DecodedProduct:
    """What the model worker and the collector need of one product."""
    seq: int
    product_id: int
    label: int
    n_images: int
    good: list                  # per image: decoded?
    pixels: np.ndarray          # (n_good * views, size, size, 3) uint8, image-major
    md5s: list                  # per image: 16-byte digest
    product_hash: bytes
    counts: list = None         # per image: (class_ids, counts) from the MD5 dictionary, or None
    problems: list = field(default_factory=list)   # messages about skipped images
    jpegs: list = None          # decode on device: the JPEG bytes of the good images (pixels is None)
    where: dict = None          # decode on device: the product's place (path, offset, record)

    def inputs(self, n_views):
        """The network inputs of this product (images x views)."""
        return len(self.pixels) if self.jpegs is None else len(self.jpegs) * n_views

    def error(self, reason):
        """The located error of `reason` about this product (predict.sources.Product.error)."""
        where = self.where or {}
        return Product(self.seq, self.product_id, self.label, [], where.get("path"), where.get("offset"),
                       where.get("record")).error(reason)

    def drop_image(self, k, reason, skip_bad):
        """Image `k` turned out undecodable: raise the located error of `reason`, or with
        `skip_bad` mark the image bad and report it (as `decode_product` does)."""
        skip_or_raise(self.error(f"image {k} {reason}"), skip_bad, self.problems)
        self.good[k] = False


def skip_or_raise(error, skip_bad, problems):
    """An undecodable image's located `error`: raised, or with `skip_bad` added to the
    product's `problems` (the image is left out)."""
    if not skip_bad:
        raise error
    problems.append(str(error))


def undecodable(jpeg):
    """The reason of an image that does not decode (after its number in the error)."""
    return f"({len(jpeg)} bytes) is not a decodable JPEG"


def decode_product(product, views, skip_bad=False, md5_counts=None):
    """Decode a `sources.Product`; `md5_counts(md5s)` gives per-image dictionary counts."""
    md5s = [image_md5(j) for j in product.jpegs]
    stacks, good, problems = [], [], []
    for k, jpeg in enumerate(product.jpegs):
        rgb = decode_rgb(jpeg)
        good.append(rgb is not None)
        if rgb is None:
            skip_or_raise(product.error(f"image {k} {undecodable(jpeg)}"), skip_bad, problems)
            continue
        stacks.append(views.of(resize(rgb, views.size)))
    pixels = np.concatenate(stacks) if stacks else np.zeros((0, *views.size, 3), np.uint8)
    return DecodedProduct(product.seq, product.product_id, product.label, len(product.jpegs), good,
                          np.ascontiguousarray(pixels), md5s, product_hash(md5s),
                          md5_counts(md5s) if md5_counts else None, problems)


def check_products(products, skip_bad=False, md5_counts=None):
    """`decode_product` of each of `products` without the decoding, for ``--decode-on
    device``: MD5s, product hash and counts, and each picture's structural check; the JPEG
    bytes of the pictures that pass travel on (`DecodedProduct.jpegs`), with the product's
    place for the errors of the device decoding. The pictures of all the products are
    checked together: one `data.jpeg.jpeg_problems` call, whose fixed cost (~2.5 ms here)
    a picture alone would pay (13 µs a picture over 200, against OpenCV's ~80 µs decode)."""
    pictures = [j for p in products for j in p.jpegs]
    lengths = np.array([len(j) for j in pictures], np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    codes = iter(jpeg_problems(b"".join(pictures), starts, lengths).tolist() if pictures else [])
    out = []
    for product in products:
        md5s = [image_md5(j) for j in product.jpegs]
        jpegs, good, problems = [], [], []
        for k, jpeg in enumerate(product.jpegs):
            code = next(codes)
            good.append(code == 0)
            if code:
                skip_or_raise(product.error(f"image {k} {describe(code, len(jpeg))}"), skip_bad, problems)
                continue
            jpegs.append(jpeg)
        out.append(DecodedProduct(product.seq, product.product_id, product.label, len(product.jpegs), good, None,
                                  md5s, product_hash(md5s), md5_counts(md5s) if md5_counts else None, problems,
                                  jpegs, {"path": product.path, "offset": product.offset, "record": product.record}))
    return out


class Md5Counts:
    """Per-image category counts from an MD5 dictionary, as class ids (for predict.md5_modes),
    each image's classes in the order they were first seen with its MD5 in the training file."""

    def __init__(self, dictionary, categories):
        self.dictionary, self.categories = dictionary, categories

    def __call__(self, md5s):
        hits = self.dictionary.images.lookup(md5s)
        order = hits.first_seen_order()
        classes, counts = self.categories.classes_of(hits.categories[order]), hits.counts[order].astype(np.int64)
        return [(classes[lo:hi], counts[lo:hi]) if hi > lo else None
                for lo, hi in zip(hits.offsets[:-1], hits.offsets[1:])]
