"""Synthetic data in the exact format of Kaggle's Cdiscount challenge.

Writes ``train.bson``, ``test.bson`` and ``category_names.csv`` (Kaggle's schema), plus
``test_solution.csv`` (the hidden test labels, ``_id,category_id``, so that predictions on
synthetic data can be scored) and ``synth_meta.json`` (options and counts).

The data is built to exercise every later stage of the pipeline:

* a 3-level category tree whose CSV rows are sorted by name, so category ids are NOT
  sorted and the class id (= row order) differs from the id order;
* long-tailed (Zipf-like) category sizes and 1 to 4 images per product;
* 180x180 JPEGs (quality 75, like the real ones) drawn from a per-category visual
  signature that a small CNN can learn: the level-1 category sets the background family,
  the level-2 category the object shape, the category itself the colours, texture and a
  small accent mark; every product varies position, scale, angle, colours and noise, and
  every further image of a product is another view of the same object;
* exact duplicate images within a category, products whose whole image list repeats an
  earlier product of the same category (the product-hash trick), a few placeholder
  pictures shared by many categories (MD5s with conflicting labels), and test products
  that reuse training images byte for byte (the MD5 tricks have something to find).

Train and test products come from one catalogue stream: product ids ascend with gaps and
each product goes to one side, so the two files hold disjoint, interleaved ids.

Determinism: the same seed and options give byte-identical files (with the same
OpenCV/libjpeg build). Layout decisions (ids, sides, categories, duplicates) come from one
sequential random stream; the pixels of an image come from a random stream keyed by the
image's identity only, so a duplicate can be re-rendered instead of being kept in memory.
Memory is bounded: pools of duplicate candidates have a fixed size per category and
rendered duplicates sit in a small LRU cache; products are written one by one.
"""
import argparse
import collections
import contextlib
import csv
import dataclasses
import os
import sys
import time

import bson
import cv2
import numpy as np
from tqdm import tqdm

from data.atomic import atomic_path, write_json

GENERATOR_VERSION = "1.0"
IMAGE_SIZE = 180
DEFAULT_JPEG_QUALITY = 75  # every image of the official sample uses libjpeg quality 75

# Share of products with 1, 2, 3 and 4 images in the full train.bson: 4,369,441 / 1,128,588 /
# 542,792 / 1,029,075 products (7,069,896 products, 12,371,293 images in total).
IMAGES_PER_PRODUCT_SHARES = (0.6180, 0.1596, 0.0768, 0.1456)

# Mean BSON bytes of a product with the default options (1.75 images of ~5.6 KB each), for
# sizing benchmark files; `estimate_bytes_per_product` measures it for other options.
APPROX_BYTES_PER_PRODUCT = 9700

# Mean gap between consecutive product ids: the official sample spans ids 0..101 with 82 products.
ID_GAP_SUCCESS_PROBABILITY = 0.8

# Duplicate pools: how many candidate images / image lists each category remembers, and the
# chance that a new one replaces a pooled one once the pool is full (low, so that some
# images recur many times, like popular pictures of a seller).
IMAGE_POOL_SIZE = 8
PRODUCT_POOL_SIZE = 4
POOL_REPLACE_PROBABILITY = 0.05
RENDER_CACHE_SIZE = 2048

# Tags that separate the random streams derived from one seed.
_TREE_STREAM, _STYLE_STREAM, _LAYOUT_STREAM, _LOOK_STREAM, _VIEW_STREAM, _BANK_STREAM = range(6)

TRAIN, TEST = "train", "test"
DATA_FILES = ("train.bson", "test.bson", "category_names.csv", "test_solution.csv")
META_FILE = "synth_meta.json"  # written last: its presence means the whole set is complete
OUTPUT_NAMES = DATA_FILES + (META_FILE,)

# ----------------------------------------------------------------------------------------
# Category tree and names
# ----------------------------------------------------------------------------------------

LEVEL1_WORDS = (
    "ELECTROMENAGER", "MAISON", "JARDIN", "PISCINE", "CUISINE", "DECORATION", "LUMINAIRE",
    "LINGE", "BRICOLAGE", "OUTILLAGE", "AUTO", "MOTO", "SPORT", "LOISIRS", "JEUX", "JOUETS",
    "PUERICULTURE", "INFORMATIQUE", "TELEPHONIE", "PHOTO", "OPTIQUE", "MUSIQUE", "LIBRAIRIE",
    "PAPETERIE", "BEAUTE", "HYGIENE", "SANTE", "PARFUM", "BIJOUX", "MONTRES", "BAGAGERIE",
    "CHAUSSURES", "VETEMENTS", "ANIMALERIE", "EPICERIE", "BOISSONS", "MEUBLE", "ENTRETIEN",
    "VIDEO", "SON", "CAMPING", "BUREAU", "QUINCAILLERIE", "CHAUFFAGE", "SECURITE",
)
LEVEL2_HEADS = (
    "PETIT", "GROS", "ACCESSOIRES", "EQUIPEMENT", "MOBILIER", "MATERIEL", "RANGEMENT",
    "PIECES", "CONSOMMABLES", "ARTICLES", "APPAREILS", "PRODUITS", "SOIN", "DECO", "TEXTILE",
    "JEU", "COFFRET", "PACK",
)
LEVEL3_NOUNS = (
    "BOUILLOIRE", "GRILLE-PAIN", "CAFETIERE", "ASPIRATEUR", "LAMPE", "COUSSIN", "ETAGERE",
    "PERCEUSE", "TOURNEVIS", "CASQUE", "CHARGEUR", "COQUE", "CABLE", "BALLON", "RAQUETTE",
    "TENTE", "SAC A DOS", "VALISE", "MONTRE", "BAGUE", "COLLIER", "CREME", "SHAMPOING",
    "BROSSE", "BIBERON", "POUSSETTE", "PELUCHE", "PUZZLE", "FIGURINE", "LIVRE", "CAHIER",
    "STYLO", "CLAVIER", "SOURIS", "ECRAN", "ENCEINTE", "OBJECTIF", "TREPIED", "GUITARE",
    "VELO", "CASSEROLE", "POELE", "ASSIETTE", "VERRE", "TAPIS", "RIDEAU", "DRAP", "OREILLER",
    "CHAISE", "TABLE", "CANAPE", "ARMOIRE", "JARDINIERE", "TONDEUSE", "ARROSOIR", "BARBECUE",
    "PNEU", "ESSUIE-GLACE", "AMPOULE", "PILE", "GAMELLE", "AQUARIUM", "THE", "CHOCOLAT",
    "SAVON", "BOUGIE", "CADRE", "HORLOGE", "MIROIR", "VASE", "PARAPLUIE", "CEINTURE",
    "PORTEFEUILLE", "LUNETTES", "BONNET", "GANT", "ECHARPE", "TABOURET", "LAVABO", "ROBINET",
)
LEVEL3_QUALIFIERS = (
    "ÉLECTRIQUE", "SANS FIL", "EN CÉRAMIQUE", "EN MÉTAL", "EN BOIS", "À LED", "PLIANT",
    "ENFANT", "DE VOYAGE", "ÉTANCHE", "RÉTRO", "DESIGN", "PROFESSIONNEL", "GÉANT", "MINIATURE",
    "CONNECTÉ", "ÉCOLOGIQUE", "RÉGLABLE", "DÉCORATIF", "D'EXTÉRIEUR", "FANTAISIE", "EN VERRE",
    "EN COTON", "ISOTHERME", "PORTABLE", "MULTIFONCTION", "ANTIADHÉSIF", "CHAUFFANT",
    "LUMINEUX", "MAGNÉTIQUE", "À PILES", "DE POCHE", "DE SÉCURITÉ", "PERSONNALISÉ",
)


def tree_shape(n_categories):
    """Numbers of level-1 and level-2 names for `n_categories` leaves.

    0.675 * K**0.5 and 0.781 * K**0.75 give the official file's 49 and 483 names at K = 5270
    and about K/7 and K/3 for a 20-category demo.
    """
    n_level1 = min(n_categories, max(1, round(0.675 * n_categories ** 0.5)))
    n_level2 = min(n_categories, max(n_level1, round(0.781 * n_categories ** 0.75)))
    return n_level1, n_level2


def _unique_names(count, compose, rng):
    """`count` distinct names from `compose(rng)`; a numbered suffix when the words run out."""
    names, seen = [], set()
    attempts = 0
    while len(names) < count:
        name = compose(rng)
        attempts += 1
        if name in seen and attempts > 20 * count:
            name = f"{name} {len(names) + 1}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _compose_level1(rng):
    n_words = int(rng.choice([1, 2, 3], p=[0.4, 0.45, 0.15]))
    return " - ".join(rng.choice(LEVEL1_WORDS, n_words, replace=False))


def _compose_level3(rng):
    noun = str(rng.choice(LEVEL3_NOUNS))
    n_qualifiers = int(rng.choice([0, 1, 2], p=[0.15, 0.6, 0.25]))
    return " ".join([noun, *rng.choice(LEVEL3_QUALIFIERS, n_qualifiers, replace=False)])


def _assign_parents(n_children, n_parents, rng):
    """Parent index of each child such that every parent has at least one child."""
    parents = np.concatenate([np.arange(n_parents), rng.integers(0, n_parents, n_children - n_parents)])
    return rng.permutation(parents)


@dataclasses.dataclass(frozen=True)
class Category:
    """One leaf of the category tree; `level1_index` / `level2_index` drive its visual style."""
    category_id: int
    level1: str
    level2: str
    level3: str
    level1_index: int
    level2_index: int


def build_categories(n_categories, seed):
    """The category tree, in `category_names.csv` row order (sorted by names, not by id).

    Category ids are distinct 10-digit numbers like Kaggle's (1000000000 + a few thousand).
    Because the class id of a category is its row number, the ids are guaranteed not to be
    in ascending row order (for two or more categories), so no stage can get away with
    sorting them.
    """
    rng = np.random.default_rng([seed, _TREE_STREAM])
    n_level1, n_level2 = tree_shape(n_categories)
    level1_names = _unique_names(n_level1, _compose_level1, rng)
    level2_parent = _assign_parents(n_level2, n_level1, rng)
    level2_names = _unique_names(
        n_level2,
        lambda r: f"{r.choice(LEVEL2_HEADS)} {r.choice(LEVEL1_WORDS)}",
        rng,
    )
    leaf_parent = _assign_parents(n_categories, n_level2, rng)
    level3_names = _unique_names(n_categories, _compose_level3, rng)
    id_span = max(20000, 4 * n_categories)
    category_ids = 1000000000 + 1000 + rng.choice(id_span, n_categories, replace=False)
    leaves = sorted(
        (level1_names[level2_parent[p]], level2_names[p], level3_names[i], int(level2_parent[p]), int(p))
        for i, p in enumerate(leaf_parent)
    )
    if n_categories > 1 and np.all(np.diff(category_ids) > 0):
        category_ids = category_ids[::-1]
    return [
        Category(int(cid), l1, l2, l3, i1, i2)
        for cid, (l1, l2, l3, i1, i2) in zip(category_ids, leaves)
    ]


def category_rows(categories):
    """Rows of `category_names.csv`, header first."""
    header = ["category_id", "category_level1", "category_level2", "category_level3"]
    return [header] + [[c.category_id, c.level1, c.level2, c.level3] for c in categories]


def category_weights(n_categories, zipf_exponent, seed):
    """Long-tailed share of products per category: Zipf over a random ranking of categories."""
    rng = np.random.default_rng([seed, _TREE_STREAM, 1])
    ranks = rng.permutation(n_categories) + 1
    weights = ranks.astype(np.float64) ** -zipf_exponent
    return weights / weights.sum()


# ----------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------

# Captions of the 'no picture' placeholders (OpenCV's Hershey fonts have no accents).
PLACEHOLDER_TEXTS = (("PAS D'IMAGE",), ("IMAGE NON", "DISPONIBLE"), ("PHOTO", "A VENIR"))
SHAPES = ("disc", "box", "triangle", "diamond", "hexagon", "star", "cross", "ring", "bars", "bottle")
TEXTURES = ("plain", "vstripes", "hstripes", "diagonal", "checker", "dots", "grid")


@dataclasses.dataclass(frozen=True)
class CategoryStyle:
    """The visual signature of a category (colours are BGR uint8 triples)."""
    background: tuple
    shape: str
    aspect: float
    size: float
    n_objects: int
    main_color: tuple
    texture: str
    texture_color: tuple
    accent_color: tuple
    accent_offset: tuple


def _hsv_to_bgr(hue, saturation, value):
    pixel = np.array([[[hue % 180, saturation, value]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0])


def category_style(category_index, category, seed):
    """Visual signature: level 1 sets the background family and object count, level 2 the
    shape, the category its colours (hues spread by the golden ratio), texture and accent."""
    level1_rng = np.random.default_rng([seed, _STYLE_STREAM, 1, category.level1_index])
    level2_rng = np.random.default_rng([seed, _STYLE_STREAM, 2, category.level2_index])
    rng = np.random.default_rng([seed, _STYLE_STREAM, 3, category_index])
    family = level1_rng.choice(["white", "white", "pastel", "dark"])
    background_hue = level1_rng.integers(0, 180)
    if family == "white":
        background = _hsv_to_bgr(background_hue, level1_rng.integers(0, 25), 235 + rng.integers(0, 20))
    elif family == "pastel":
        background = _hsv_to_bgr(background_hue, 40 + rng.integers(0, 40), 200 + rng.integers(0, 40))
    else:
        background = _hsv_to_bgr(background_hue, rng.integers(0, 80), 30 + rng.integers(0, 40))
    hue = (category_index * 0.6180339887 + rng.random() * 0.05) % 1.0 * 180
    return CategoryStyle(
        background=background,
        shape=SHAPES[category.level2_index] if category.level2_index < len(SHAPES) else str(level2_rng.choice(SHAPES)),
        aspect=float(level2_rng.uniform(0.6, 1.0)),
        size=float(rng.uniform(0.22, 0.34)),
        n_objects=int(level1_rng.choice([1, 1, 2, 3])),
        main_color=_hsv_to_bgr(hue, 150 + rng.integers(0, 100), 110 + rng.integers(0, 130)),
        texture=str(rng.choice(TEXTURES)),
        texture_color=_hsv_to_bgr(hue + 45 + rng.integers(0, 90), 120 + rng.integers(0, 130), 60 + rng.integers(0, 190)),
        accent_color=_hsv_to_bgr(rng.integers(0, 180), 200 + rng.integers(0, 56), 150 + rng.integers(0, 100)),
        accent_offset=(float(rng.uniform(-0.8, 0.8)), float(rng.uniform(-0.8, 0.8))),
    )


def _regular_polygon(n_vertices, radius_ratio=1.0):
    """Unit polygon with alternate vertices at radius 1 and `radius_ratio` (a star when < 1)."""
    angles = np.arange(n_vertices) * 2 * np.pi / n_vertices - np.pi / 2
    radii = np.where(np.arange(n_vertices) % 2 == 0, 1.0, radius_ratio)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _unit_shapes():
    """Each shape as a list of closed unit-size contours (filled with the even-odd rule)."""
    circle = _regular_polygon(48)
    box = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    cross = np.array([[-0.35, -1], [0.35, -1], [0.35, -0.35], [1, -0.35], [1, 0.35], [0.35, 0.35],
                      [0.35, 1], [-0.35, 1], [-0.35, 0.35], [-1, 0.35], [-1, -0.35], [-0.35, -0.35]])
    bars = [box * [0.14, 1.0] + [x, 0] for x in (-0.7, -0.23, 0.23, 0.7)]
    bottle = np.array([[-0.2, -1], [0.2, -1], [0.2, -0.55], [0.55, -0.25], [0.55, 1], [-0.55, 1],
                       [-0.55, -0.25], [-0.2, -0.55]])
    return {
        "disc": [circle],
        "box": [box * 0.85],
        "triangle": [_regular_polygon(3) * 1.1],
        "diamond": [_regular_polygon(4)],
        "hexagon": [_regular_polygon(6)],
        "star": [_regular_polygon(10, 0.45) * 1.1],
        "cross": [cross],
        "ring": [circle, circle * 0.55],
        "bars": bars,
        "bottle": [bottle],
    }


def _texture_bank(size):
    """Boolean masks of each texture, larger than an image so a random crop shifts the phase."""
    yy, xx = np.mgrid[0:size, 0:size]
    return {
        "plain": np.zeros((size, size), bool),
        "vstripes": (xx // 7) % 2 == 0,
        "hstripes": (yy // 7) % 2 == 0,
        "diagonal": ((xx + yy) // 9) % 2 == 0,
        "checker": ((xx // 11) + (yy // 11)) % 2 == 0,
        "dots": (xx % 14 - 7) ** 2 + (yy % 14 - 7) ** 2 < 12,
        "grid": (xx % 12 < 3) | (yy % 12 < 3),
    }


@dataclasses.dataclass(frozen=True)
class ProductLook:
    """Per-product variation around its category's style."""
    center: tuple
    scale: float
    angle: float
    hue_shift: int
    value_shift: int
    background_shift: tuple
    noise_level: int
    distractor: tuple  # (shape, x, y, radius, BGR colour) or () for none


@dataclasses.dataclass(frozen=True)
class View:
    """Where one image of a product is taken from: the first is the main photo (no change)."""
    shift: tuple = (0.0, 0.0)
    angle: float = 0.0
    zoom: float = 1.0
    mirror: bool = False
    texture_phase: tuple = (0, 0)
    noise_phase: tuple = (0, 0)


class ImageRenderer:
    """Renders 180x180 JPEGs; `render` is a pure function of (style, product serial, image number)."""

    # Standard deviations of the additive noise banks. One level per product, uniformly drawn,
    # spreads JPEG sizes like the official sample's (~2-11 KB, median ~5.5 KB at quality 75).
    NOISE_LEVELS = tuple(range(0, 17, 2))
    # Texture and noise banks are this much larger than an image; random crops shift their phase.
    MARGIN = 64

    def __init__(self, seed, jpeg_quality=DEFAULT_JPEG_QUALITY):
        self.seed = seed
        self.jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        self.shapes = _unit_shapes()
        bank_size = IMAGE_SIZE + self.MARGIN
        self.textures = _texture_bank(bank_size)
        unit_noise = np.random.default_rng([seed, _BANK_STREAM]).standard_normal((bank_size, bank_size, 3))
        self.noise_banks = [np.round(unit_noise * level).astype(np.int16) for level in self.NOISE_LEVELS]

    def product_look(self, serial):
        rng = np.random.default_rng([self.seed, _LOOK_STREAM, serial])
        s = IMAGE_SIZE
        distractor = ()
        if rng.random() < 0.4:
            distractor = (str(rng.choice(SHAPES)), int(rng.integers(0, s)), int(rng.integers(0, s)),
                          int(rng.integers(8, 20)), tuple(int(v) for v in rng.integers(0, 256, 3)))
        return ProductLook(
            center=(float(rng.uniform(0.38, 0.62) * s), float(rng.uniform(0.38, 0.62) * s)),
            scale=float(rng.uniform(0.75, 1.2)),
            angle=float(rng.uniform(-30, 30)),
            hue_shift=int(rng.integers(-6, 7)),
            value_shift=int(rng.integers(-25, 26)),
            background_shift=tuple(int(v) for v in rng.integers(-12, 13, 3)),
            noise_level=int(rng.integers(0, len(self.NOISE_LEVELS))),
            distractor=distractor,
        )

    def view(self, serial, image_number):
        """Further views of a product move, turn, zoom and mirror the object of the main photo."""
        rng = np.random.default_rng([self.seed, _VIEW_STREAM, serial, image_number])
        phases = {"texture_phase": tuple(int(v) for v in rng.integers(0, self.MARGIN, 2)),
                  "noise_phase": tuple(int(v) for v in rng.integers(0, self.MARGIN, 2))}
        if image_number == 0:
            return View(**phases)
        return View(shift=tuple(float(v) for v in rng.uniform(-0.12, 0.12, 2) * IMAGE_SIZE),
                    angle=float(rng.uniform(-20, 20)), zoom=float(rng.uniform(0.8, 1.2)),
                    mirror=bool(rng.random() < 0.5), **phases)

    def render(self, style, serial, image_number):
        """JPEG bytes of image `image_number` of product `serial` drawn in `style`."""
        look = self.product_look(serial)
        view = self.view(serial, image_number)
        image = self._draw(style, look, view)
        if view.mirror:
            image = image[:, ::-1]
        image = cv2.GaussianBlur(image, (3, 3), 0)  # soften the drawn edges, like a photo
        x, y = view.noise_phase
        noise = self.noise_banks[look.noise_level][y:y + IMAGE_SIZE, x:x + IMAGE_SIZE]
        return self.encode(np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8))

    def _draw(self, style, look, view):
        """The noiseless picture: background, textured object(s), accent mark and distractor."""
        s = IMAGE_SIZE
        image = np.empty((s, s, 3), np.uint8)
        image[:] = np.clip(np.add(style.background, look.background_shift), 0, 255)
        radius = style.size * s * look.scale * view.zoom
        if style.n_objects > 1:
            radius *= 0.75
        angle = np.deg2rad(look.angle + view.angle)
        cx, cy = look.center[0] + view.shift[0], look.center[1] + view.shift[1]
        spread = radius * 0.9
        offsets = [(0.0, 0.0), (-spread, spread * 0.4), (spread, -spread * 0.4)][: style.n_objects]
        contours = []
        for dx, dy in offsets:
            contours += self._contours(style.shape, cx + dx, cy + dy, radius, style.aspect, angle)
        cv2.fillPoly(image, contours, _jitter_color(style.main_color, look.hue_shift, look.value_shift), cv2.LINE_AA)
        mask = np.zeros((s, s), np.uint8)
        cv2.fillPoly(mask, contours, 255)
        x, y = view.texture_phase
        texture = self.textures[style.texture][y:y + s, x:x + s]
        image[(mask > 0) & texture] = _jitter_color(style.texture_color, look.hue_shift, look.value_shift)
        accent_center = (int(cx + style.accent_offset[0] * radius), int(cy + style.accent_offset[1] * radius))
        cv2.circle(image, accent_center, max(3, int(radius * 0.28)), style.accent_color, -1, cv2.LINE_AA)
        if look.distractor:
            shape, x, y, r, color = look.distractor
            cv2.fillPoly(image, self._contours(shape, x, y, r, 1.0, 0.0), color, cv2.LINE_AA)
        return image

    def placeholder(self, index):
        """A 'no picture' image, the same bytes whatever the category (MD5s with many labels)."""
        rng = np.random.default_rng([self.seed, _BANK_STREAM, 1, index])
        image = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        image[:] = _hsv_to_bgr(rng.integers(0, 180), rng.integers(0, 30), 215 + rng.integers(0, 40))
        ink = _hsv_to_bgr(rng.integers(0, 180), rng.integers(0, 60), 80 + rng.integers(0, 60))
        cv2.rectangle(image, (55, 45), (125, 95), ink, 3, cv2.LINE_AA)  # a camera outline
        cv2.circle(image, (90, 70), 15, ink, 3, cv2.LINE_AA)
        cv2.rectangle(image, (70, 38), (90, 45), ink, -1)
        for row, text in enumerate(PLACEHOLDER_TEXTS[index % len(PLACEHOLDER_TEXTS)]):
            cv2.putText(image, text, (22, 125 + 22 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.5, ink, 1, cv2.LINE_AA)
        return self.encode(image)

    def encode(self, image):
        ok, buffer = cv2.imencode(".jpg", image, self.jpeg_params)
        if not ok:
            raise RuntimeError("cv2.imencode failed to encode a synthetic image")
        return buffer.tobytes()

    def _contours(self, shape, cx, cy, radius, aspect, angle):
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return [
            np.round((contour * [aspect, 1.0]) @ rotation.T * radius + [cx, cy]).astype(np.int32)
            for contour in self.shapes[shape]
        ]


def _jitter_color(bgr, hue_shift, value_shift):
    hsv = cv2.cvtColor(np.array([[bgr]], np.uint8), cv2.COLOR_BGR2HSV)[0, 0].astype(int)
    return _hsv_to_bgr(hsv[0] + hue_shift, hsv[1], int(np.clip(hsv[2] + value_shift, 0, 255)))


# ----------------------------------------------------------------------------------------
# Products
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SynthOptions:
    """Everything that determines the output bytes (besides the library versions)."""
    train_products: int = 3000
    test_products: int = 500
    categories: int = 20
    seed: int = 0
    zipf_exponent: float = 0.8
    duplicate_share: float = 0.2
    product_copy_share: float = 0.03
    placeholder_share: float = 0.01
    placeholders: int = 3
    jpeg_quality: int = DEFAULT_JPEG_QUALITY

    def __post_init__(self):
        if self.train_products < 0 or self.test_products < 0:
            raise ValueError("product counts must be >= 0")
        if self.categories < 1:
            raise ValueError("need at least one category")
        if self.placeholders < 1:
            raise ValueError("need at least one placeholder picture")
        for name in ("duplicate_share", "product_copy_share", "placeholder_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.product_copy_share + self.placeholder_share > 1.0:
            raise ValueError("product_copy_share + placeholder_share must not exceed 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be within [1, 100]")
        if self.zipf_exponent < 0:
            raise ValueError("zipf_exponent must be >= 0")


@dataclasses.dataclass(frozen=True)
class SynthImage:
    """One picture and where it comes from.

    `origin` is (serial of the product that first showed it, image number) for rendered
    images and ("placeholder", index) for placeholders; `origin_side` is the side of that
    first product; `reused` is True when these bytes appeared in an earlier product.
    """
    picture: bytes
    origin: tuple
    origin_side: str
    reused: bool


@dataclasses.dataclass(frozen=True)
class SynthProduct:
    """One product; `copied`: its image list repeats an earlier product's, `placeholder`: its
    only image is a 'no picture' placeholder. `class_id` is its row in category_names.csv."""
    side: str
    product_id: int
    category_id: int
    class_id: int
    images: tuple
    copied: bool = False
    placeholder: bool = False

    def document(self):
        """The BSON document in Kaggle's key order; test documents carry no `category_id`."""
        doc = {"_id": self.product_id, "imgs": [{"picture": image.picture} for image in self.images]}
        if self.side == TRAIN:
            doc["category_id"] = self.category_id
        return doc


class _Pool:
    """A bounded pool of candidates for reuse; fills up, then rarely replaces a member."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.members = []

    def offer(self, item, rng):
        """Add `item` when there is room, else replace a random member now and then; True if kept."""
        if len(self.members) < self.capacity:
            self.members.append(item)
        elif rng.random() < POOL_REPLACE_PROBABILITY:
            self.members[int(rng.integers(0, self.capacity))] = item
        else:
            return False
        return True

    def pick(self, rng):
        return self.members[int(rng.integers(0, len(self.members)))] if self.members else None


class _RenderCache:
    """LRU cache of pooled pictures, so popular duplicates are not re-rendered.

    A picture evicted from the cache is rendered again when needed (same bytes).
    """

    def __init__(self, render, capacity=RENDER_CACHE_SIZE):
        self.render = render
        self.capacity = capacity
        self.entries = collections.OrderedDict()

    def get(self, key):
        picture = self.entries.get(key)
        if picture is None:
            picture = self.render(*key)
            self.put(key, picture)
        else:
            self.entries.move_to_end(key)
        return picture

    def put(self, key, picture):
        self.entries[key] = picture
        if len(self.entries) > self.capacity:
            self.entries.popitem(last=False)


class _Catalogue:
    """What the product stream remembers: category styles, placeholders, reuse pools, renders."""

    def __init__(self, options, categories):
        self.options = options
        renderer = ImageRenderer(options.seed, options.jpeg_quality)
        styles = [category_style(i, c, options.seed) for i, c in enumerate(categories)]
        self.placeholders = [renderer.placeholder(k) for k in range(options.placeholders)]
        self.placeholders_seen = set()
        self.cache = _RenderCache(lambda class_id, serial, number: renderer.render(styles[class_id], serial, number))
        self.image_pools = [_Pool(IMAGE_POOL_SIZE) for _ in categories]
        self.product_pools = [_Pool(PRODUCT_POOL_SIZE) for _ in categories]

    def product_images(self, serial, side, class_id, rng):
        """(images, copied, placeholder) of a new product of class `class_id` on `side`."""
        kind = rng.random()
        if kind >= 1.0 - self.options.placeholder_share:
            return (self._placeholder_image(side, rng),), False, True
        copy_source = self.product_pools[class_id].pick(rng) if kind < self.options.product_copy_share else None
        if copy_source is not None:
            images = tuple(SynthImage(self.cache.get((class_id, *origin)), origin, origin_side, True)
                           for origin, origin_side in copy_source)
            return images, True, False
        images = self._new_images(serial, side, class_id, rng)
        self.product_pools[class_id].offer(tuple((image.origin, image.origin_side) for image in images), rng)
        return images, False, False

    def _placeholder_image(self, side, rng):
        index = int(rng.integers(0, self.options.placeholders))
        image = SynthImage(self.placeholders[index], ("placeholder", index), side, index in self.placeholders_seen)
        self.placeholders_seen.add(index)
        return image

    def _new_images(self, serial, side, class_id, rng):
        """Images of a new product: each a pooled picture of its category or a fresh render."""
        n_images = int(rng.choice(len(IMAGES_PER_PRODUCT_SHARES), p=IMAGES_PER_PRODUCT_SHARES)) + 1
        pool = self.image_pools[class_id]
        images = []
        for number in range(n_images):
            candidate = pool.pick(rng) if rng.random() < self.options.duplicate_share else None
            if candidate is not None and all(candidate[0] != image.origin for image in images):
                origin, origin_side = candidate
                images.append(SynthImage(self.cache.get((class_id, *origin)), origin, origin_side, True))
            else:
                origin = (serial, number)
                picture = self.cache.render(class_id, *origin)
                if pool.offer((origin, side), rng):
                    self.cache.put((class_id, *origin), picture)
                images.append(SynthImage(picture, origin, side, False))
        return tuple(images)


def generate_products(options, categories=None):
    """Yield `SynthProduct`s in product-id order, train and test interleaved.

    `categories` (from `build_categories`) may be passed to avoid building the tree twice.
    """
    categories = categories or build_categories(options.categories, options.seed)
    cumulative_weights = np.cumsum(category_weights(len(categories), options.zipf_exponent, options.seed))
    catalogue = _Catalogue(options, categories)
    rng = np.random.default_rng([options.seed, _LAYOUT_STREAM])
    remaining = {TRAIN: options.train_products, TEST: options.test_products}
    product_id = -1
    for serial in range(options.train_products + options.test_products):
        product_id += int(rng.geometric(ID_GAP_SUCCESS_PROBABILITY))
        # Picking a side with probability remaining/total gives exact counts, evenly interleaved.
        side = TRAIN if rng.random() * (remaining[TRAIN] + remaining[TEST]) < remaining[TRAIN] else TEST
        remaining[side] -= 1
        class_id = min(int(np.searchsorted(cumulative_weights, rng.random(), side="right")), len(categories) - 1)
        images, copied, placeholder = catalogue.product_images(serial, side, class_id, rng)
        yield SynthProduct(side, product_id, categories[class_id].category_id, class_id, images, copied, placeholder)


# ----------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------


class _Tally:
    """Counts of what has been written, for the summary; constant memory."""

    def __init__(self):
        self.sides = {side: {"products": 0, "images": 0, "bytes": 0} for side in (TRAIN, TEST)}
        self.counts = collections.Counter()
        self.placeholder_classes = set()

    def add(self, product, n_bytes):
        side = self.sides[product.side]
        side["products"] += 1
        side["images"] += len(product.images)
        side["bytes"] += n_bytes
        self.counts["copied_products"] += product.copied
        if product.placeholder:
            self.counts["placeholder_products"] += 1
            self.counts["placeholder_images"] += len(product.images)
            self.placeholder_classes.add(product.class_id)
        for image in product.images:
            self.counts["duplicate_images"] += image.reused
            self.counts["distinct_images"] += not image.reused
            self.counts["test_images_from_train"] += product.side == TEST and image.origin_side == TRAIN

    @property
    def total_bytes(self):
        return sum(side["bytes"] for side in self.sides.values())

    @property
    def total_images(self):
        return sum(side["images"] for side in self.sides.values())

    def summary(self, options, n_categories):
        """What `synth_meta.json` holds: only values fixed by the options, so it is reproducible too."""
        return {
            "generator_version": GENERATOR_VERSION,
            "library_versions": {"opencv": cv2.__version__, "numpy": np.__version__},
            "options": dataclasses.asdict(options),
            "categories": n_categories,
            "tree": dict(zip(("level1", "level2"), tree_shape(n_categories))),
            "train": dict(self.sides[TRAIN]),
            "test": dict(self.sides[TEST]),
            **{key: self.counts[key] for key in (
                "distinct_images", "duplicate_images", "copied_products", "placeholder_products",
                "placeholder_images", "test_images_from_train")},
            "placeholder_categories": len(self.placeholder_classes),
        }

    def speed(self, seconds):
        seconds = max(seconds, 1e-9)
        return {
            "seconds": round(seconds, 3),
            "mb_per_second": round(self.total_bytes / 1e6 / seconds, 2),
            "images_per_second": round(self.total_images / seconds, 1),
        }


def generate(out_dir, options=None, progress=True, **option_values):
    """Write the synthetic dataset into `out_dir` and return its summary.

    Pass either a `SynthOptions` or its fields as keywords, e.g.
    `generate(path, train_products=100, test_products=20, categories=5, seed=1)`.
    The summary is what `synth_meta.json` holds plus a `speed` entry (seconds, MB/s,
    images/s). Every file appears only once complete (`data.atomic`), `synth_meta.json` last.
    """
    if options is None:
        options = SynthOptions(**option_values)
    elif option_values:
        options = dataclasses.replace(options, **option_values)
    os.makedirs(out_dir, exist_ok=True)
    categories = build_categories(options.categories, options.seed)
    tally = _Tally()
    started = time.perf_counter()
    with contextlib.ExitStack() as outputs:
        # Entered in reverse so that, on success, the files are renamed in DATA_FILES order.
        paths = {name: outputs.enter_context(atomic_path(os.path.join(out_dir, name))) for name in reversed(DATA_FILES)}
        _write_csv(paths["category_names.csv"], category_rows(categories))
        with open(paths["train.bson"], "wb", buffering=1 << 20) as train_file, \
                open(paths["test.bson"], "wb", buffering=1 << 20) as test_file, \
                open(paths["test_solution.csv"], "w", newline="", encoding="utf-8") as solution_file:
            _write_products(options, categories, {TRAIN: train_file, TEST: test_file},
                            csv.writer(solution_file, lineterminator="\n"), tally, progress)
    summary = tally.summary(options, len(categories))
    write_json(os.path.join(out_dir, META_FILE), summary)
    summary["speed"] = tally.speed(time.perf_counter() - started)
    return summary


def _write_products(options, categories, bson_files, solution, tally, progress):
    """Stream every product to its side's BSON file; test labels go to the solution CSV."""
    solution.writerow(["_id", "category_id"])
    with tqdm(total=options.train_products + options.test_products, unit="product",
              disable=not progress, desc="synth", mininterval=1.0) as bar:
        for count, product in enumerate(generate_products(options, categories), 1):
            encoded = bson.encode(product.document())
            bson_files[product.side].write(encoded)
            if product.side == TEST:
                solution.writerow([product.product_id, product.category_id])
            tally.add(product, len(encoded))
            bar.update()
            if count % 1000 == 0:
                bar.set_postfix_str(f"{tally.total_bytes / 1e6:.0f} MB", refresh=False)


def _write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def estimate_bytes_per_product(options, sample_products=400):
    """Mean BSON bytes of a product under `options`, measured on `sample_products` products.

    Lets benchmarks ask for a file of a given size (`bench/make_big_bson.py`).
    """
    sample = dataclasses.replace(options, train_products=sample_products, test_products=0)
    sizes = [len(bson.encode(product.document())) for product in generate_products(sample)]
    return sum(sizes) / len(sizes)


def format_summary(summary):
    """A few human-readable lines describing a `generate` summary."""
    train, test, speed = summary["train"], summary["test"], summary["speed"]
    return "\n".join([
        f"train.bson: {train['products']:,} products, {train['images']:,} images, {train['bytes'] / 1e6:,.1f} MB",
        f"test.bson:  {test['products']:,} products, {test['images']:,} images, {test['bytes'] / 1e6:,.1f} MB",
        f"categories: {summary['categories']:,} ({summary['tree']['level1']} level-1, {summary['tree']['level2']} level-2)",
        f"images: {summary['distinct_images']:,} distinct, {summary['duplicate_images']:,} duplicates, "
        f"{summary['placeholder_images']:,} placeholders over {summary['placeholder_categories']} categories, "
        f"{summary['test_images_from_train']:,} test images from train, {summary['copied_products']:,} copied products",
        f"speed: {speed['seconds']:.1f} s, {speed['mb_per_second']} MB/s, {speed['images_per_second']} images/s",
    ])


def parse_args(argv=None):
    defaults = SynthOptions()
    parser = argparse.ArgumentParser(
        prog="python -m data.synth",
        description="Write synthetic train.bson, test.bson and category_names.csv in Kaggle's Cdiscount format.",
    )
    parser.add_argument("--out", required=True, help="output folder (created if needed)")
    parser.add_argument("--train-products", type=int, default=defaults.train_products)
    parser.add_argument("--test-products", type=int, default=defaults.test_products)
    parser.add_argument("--categories", type=int, default=defaults.categories)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--zipf-exponent", type=float, default=defaults.zipf_exponent,
                        help="category i of the random ranking gets a share proportional to i**-exponent")
    parser.add_argument("--duplicate-share", type=float, default=defaults.duplicate_share,
                        help="chance that an image repeats an earlier image of its category")
    parser.add_argument("--product-copy-share", type=float, default=defaults.product_copy_share,
                        help="chance that a product repeats the image list of an earlier product of its category")
    parser.add_argument("--placeholder-share", type=float, default=defaults.placeholder_share,
                        help="chance that a product's only image is a 'no picture' placeholder")
    parser.add_argument("--placeholders", type=int, default=defaults.placeholders,
                        help="number of distinct placeholder pictures")
    parser.add_argument("--jpeg-quality", type=int, default=defaults.jpeg_quality)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    values = vars(args)
    out_dir, progress = values.pop("out"), not values.pop("no_progress")
    try:
        options = SynthOptions(**values)
    except ValueError as error:
        sys.exit(f"data.synth: {error}")
    summary = generate(out_dir, options, progress=progress)
    print(format_summary(summary))
    print(f"written to {os.path.abspath(out_dir)}")


if __name__ == "__main__":
    main()
