"""Synthetic data in the exact format of Kaggle's Cdiscount challenge.

Writes ``train.bson``, ``test.bson`` and ``category_names.csv`` (Kaggle's schema), plus
``test_solution.csv`` (the hidden test labels, ``_id,category_id``, so that predictions on
synthetic data can be scored) and ``synth_meta.json`` (options and counts).

The data is built to exercise every later stage of the pipeline:

* a 3-level category tree whose CSV rows are sorted by name, so category ids are NOT
  sorted and the class id (= row order) differs from the id order;
* long-tailed (Zipf-like) category sizes and 1 to 4 images per product;
* 180x180 JPEGs (quality 75, like the real ones) drawn from a per-category visual
  signature: the level-1 category sets the background family and object count, the
  level-2 category the object shape and a group style, the category itself its colours,
  texture and a small accent mark; every further image of a product is another view of
  the same object;
* exact duplicate images within a category, products whose whole image list repeats an
  earlier product of the same category (the product-hash trick), a few placeholder
  pictures shared by many categories (MD5s with conflicting labels), and test products
  that reuse training images byte for byte (the MD5 tricks have something to find).

Difficulty. The data should be learnable but not trivial, so that the effects the real
competition showed stay visible on a small demo (real single models reached ~0.73 image
accuracy; per-product combining, ensembling and the MD5 tricks each added a little). With
the defaults a tiny CNN trained a few epochs on the 20-category demo reaches roughly
0.55-0.85 image accuracy (majority class: ~0.17). Mechanisms, each an option:

* confusable siblings (`sibling_similarity`, default 0.9): categories of one level-2 group
  share its shape, background shade, size, texture, accent mark and colours, each moved
  only `1 - sibling_similarity` of the way towards the category's own values (hues of
  three siblings 6 of 180 steps apart; a category keeps its own texture with probability
  `1 - sibling_similarity`). Telling the group is easy, telling siblings apart is not;
* ambiguous products (`ambiguous_share`, default 0.1, and `ambiguous_sibling_share`,
  default 0.75): that share of products is drawn in the style of a random sibling category
  (or, for the rest, of any other category) while keeping its own label, like the real
  catalogue's mislabelled or ambiguous products: errors no model can avoid, though an
  exact duplicate of such a picture in the training data (MD5 tricks) still fixes them;
* per-product variation (`product_variation`, default 1; 0 to 3 scales it): position,
  scale, angle, a hue/saturation/value shift of the object colours larger than the gap
  between siblings (hue up to +-10), background shift, noise level and props seen in
  every image;
* per-image variation (`image_variation`, default 1): besides the pose of further views
  (shift, turn, zoom up to detail close-ups, mirror), every image gets its own colour cast,
  sometimes a defocus blur, an occluder over part of the object and clutter around it, so
  a single image is less reliable than a product's several images.

Train and test products come from one catalogue stream: product ids ascend with gaps and
each product goes to one side, so the two files hold disjoint, interleaved ids.

Determinism: the same seed and options give byte-identical files (with the same
OpenCV/libjpeg build). Layout decisions (ids, sides, categories, duplicates) come from one
sequential random stream; the pixels of an image come from random streams keyed by the
image's identity only (its product's serial and its number; also which style draws an
ambiguous product), so a duplicate can be re-rendered instead of being kept in memory.
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

from data.atomic import atomic_path, exclusive_output, write_json
from data.cli import add_common_options, command

GENERATOR_VERSION = "2.1"
IMAGE_SIZE = 180
DEFAULT_JPEG_QUALITY = 75  # every image of the official sample uses libjpeg quality 75

# Difficulty defaults (see the module docstring and `SynthOptions`): tuned so that a tiny CNN
# trained a few epochs on the 20-category demo reaches roughly 0.55-0.85 image accuracy.
DEFAULT_SIBLING_SIMILARITY = 0.9
DEFAULT_AMBIGUOUS_SHARE = 0.1
DEFAULT_AMBIGUOUS_SIBLING_SHARE = 0.75
DEFAULT_PRODUCT_VARIATION = 1.0
DEFAULT_IMAGE_VARIATION = 1.0

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
_TREE_STREAM, _STYLE_STREAM, _LAYOUT_STREAM, _LOOK_STREAM, _VIEW_STREAM, _BANK_STREAM, _AMBIGUITY_STREAM = range(7)

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
    """The visual signature of a category: background BGR, object colours as HSV triples."""
    background: tuple
    shape: str
    aspect: float
    size: float
    n_objects: int
    main_hsv: tuple
    texture: str
    texture_hsv: tuple
    accent_color: tuple
    accent_offset: tuple


def _hsv_to_bgr(hue, saturation, value):
    """BGR triple of an OpenCV HSV colour; saturation and value are clipped to [0, 255]."""
    pixel = np.array([[[round(hue) % 180, min(255, max(0, round(saturation))), min(255, max(0, round(value)))]]],
                     np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0])


# Saturation and value ranges of the background families (OpenCV HSV: hue 0-179, others 0-255).
BACKGROUND_FAMILIES = {"white": (0, 25, 235, 255), "pastel": (40, 80, 200, 240), "dark": (0, 80, 30, 70)}


def sibling_ranks(categories):
    """(rank among the categories of its level-2 group, size of that group) of each category."""
    groups = collections.defaultdict(list)
    for index, category in enumerate(categories):
        groups[category.level2_index].append(index)
    ranks = {}
    for members in groups.values():
        for rank, index in enumerate(members):
            ranks[index] = (rank, len(members))
    return [ranks[index] for index in range(len(categories))]


def category_style(category_index, category, seed, sibling_similarity=DEFAULT_SIBLING_SIMILARITY,
                   sibling_rank=(0, 1)):
    """Visual signature of a category, mostly inherited from its level-2 group.

    Level 1 sets the background family and object count, level 2 the shape and a group style
    (shade of the background, size, aspect, colours, texture, accent mark). Each category
    then moves every group value towards its own value by `1 - sibling_similarity`: its hue
    is the group hue plus its share of an even spread of the siblings around the colour
    circle (so at similarity 0.9 three siblings differ by 6 hue steps of 180), and it keeps
    its own texture only with probability `1 - sibling_similarity`. At similarity 1 siblings
    look alike; at 0 they are as distinct as categories of different groups.
    `sibling_rank` is (rank, group size) from `sibling_ranks`.
    """
    level1_rng = np.random.default_rng([seed, _STYLE_STREAM, 1, category.level1_index])
    level2_rng = np.random.default_rng([seed, _STYLE_STREAM, 2, category.level2_index])
    rng = np.random.default_rng([seed, _STYLE_STREAM, 3, category_index])
    own = 1.0 - sibling_similarity

    def mix(low, high):
        """A group value drawn in [low, high), moved towards the category's own draw."""
        group_value = level2_rng.uniform(low, high)
        return group_value + own * (rng.uniform(low, high) - group_value)

    family = str(level1_rng.choice(["white", "white", "pastel", "dark"]))
    background_hue = level1_rng.integers(0, 180)
    s_low, s_high, v_low, v_high = BACKGROUND_FAMILIES[family]
    background = _hsv_to_bgr(background_hue + mix(-10, 10), mix(s_low, s_high), mix(v_low, v_high))
    rank, n_siblings = sibling_rank
    hue = level2_rng.uniform(0, 180) + own * (rank - (n_siblings - 1) / 2) * 180 / n_siblings + mix(-3, 3)
    group_texture = str(level2_rng.choice(TEXTURES))
    own_texture = str(rng.choice(TEXTURES))
    return CategoryStyle(
        background=background,
        shape=SHAPES[category.level2_index] if category.level2_index < len(SHAPES) else str(level2_rng.choice(SHAPES)),
        aspect=float(mix(0.6, 1.0)),
        size=float(mix(0.22, 0.34)),
        n_objects=int(level1_rng.choice([1, 1, 2, 3])),
        main_hsv=(float(hue), float(mix(150, 250)), float(mix(110, 240))),
        texture=own_texture if rng.random() < own else group_texture,
        texture_hsv=(float(hue + mix(45, 135)), float(mix(120, 250)), float(mix(60, 250))),
        accent_color=_hsv_to_bgr(mix(0, 180), mix(200, 256), mix(150, 250)),
        accent_offset=(float(mix(-0.8, 0.8)), float(mix(-0.8, 0.8))),
    )


def category_styles(categories, seed, sibling_similarity=DEFAULT_SIBLING_SIMILARITY):
    """The style of every category, in row order."""
    return [category_style(i, c, seed, sibling_similarity, rank)
            for i, (c, rank) in enumerate(zip(categories, sibling_ranks(categories)))]


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
        "plate": [box],  # occluders: a plain rectangle
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
    """Per-product variation around its category's style, shared by all its images."""
    center: tuple
    scale: float
    angle: float
    hsv_shift: tuple  # added to the hue, saturation and value of the object colours
    background_shift: tuple
    noise_level: int
    props: tuple  # distractors seen in every image: (shape, x, y, radius, BGR colour) each


@dataclasses.dataclass(frozen=True)
class View:
    """How one image of a product is taken. The first image is the main photo: same pose as
    the product's look; the others move, turn, zoom and mirror it. Every image may get its own
    colour cast, defocus, an occluder over the object and clutter around it."""
    shift: tuple = (0.0, 0.0)
    angle: float = 0.0
    zoom: float = 1.0
    mirror: bool = False
    texture_phase: tuple = (0, 0)
    noise_phase: tuple = (0, 0)
    cast: tuple = ()  # () or (BGR gains, BGR offsets) applied to every colour of the picture
    blur: int = 3  # Gaussian kernel size
    occluder: tuple = ()  # () or (dx, dy, half width, half height (all in object radii), angle, BGR colour)
    clutter: tuple = ()  # distractors of this image only, like `ProductLook.props`


class ImageRenderer:
    """Renders 180x180 JPEGs; `render` is a pure function of (style, product serial, image number).

    `product_variation` and `image_variation` scale how much products of a category, and
    images of a product, differ (0: almost identical; 1: the defaults' realistic spread).
    """

    # Standard deviations of the additive noise banks. One level per product, uniformly drawn,
    # spreads JPEG sizes like the official sample's (~2-11 KB, median ~5.5 KB at quality 75).
    NOISE_LEVELS = tuple(range(0, 17, 2))
    # Texture and noise banks are this much larger than an image; random crops shift their phase.
    MARGIN = 64

    def __init__(self, seed, jpeg_quality=DEFAULT_JPEG_QUALITY, product_variation=DEFAULT_PRODUCT_VARIATION,
                 image_variation=DEFAULT_IMAGE_VARIATION):
        self.seed = seed
        self.jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        self.product_variation = float(product_variation)
        self.image_variation = float(image_variation)
        self.shapes = _unit_shapes()
        bank_size = IMAGE_SIZE + self.MARGIN
        self.textures = _texture_bank(bank_size)
        unit_noise = np.random.default_rng([seed, _BANK_STREAM]).standard_normal((bank_size, bank_size, 3))
        self.noise_banks = [np.round(unit_noise * level).astype(np.int16) for level in self.NOISE_LEVELS]
        self._last_look = (None, None)  # the images of a product are rendered one after the other

    def product_look(self, serial):
        if self._last_look[0] == serial:
            return self._last_look[1]
        rng = np.random.default_rng([self.seed, _LOOK_STREAM, serial])
        s, pv = IMAGE_SIZE, self.product_variation
        props = tuple(_distractor(rng, 8, 20 + 10 * pv) for _ in range(rng.binomial(2, 0.2 + 0.2 * pv)))
        centre_spread = 0.12 + 0.04 * pv
        look = ProductLook(
            center=tuple(float(v) for v in rng.uniform(0.5 - centre_spread, 0.5 + centre_spread, 2) * s),
            scale=float(rng.uniform(max(0.3, 1 - 0.3 * pv), 1 + 0.3 * pv)),
            angle=float(rng.uniform(-1, 1) * (15 + 30 * pv)),
            hsv_shift=(float(rng.uniform(-1, 1) * (4 + 6 * pv)), float(rng.uniform(-1, 1) * 40 * pv),
                       float(rng.uniform(-1, 1) * (15 + 20 * pv))),
            background_shift=tuple(int(v) for v in np.round(rng.uniform(-1, 1, 3) * (8 + 8 * pv))),
            noise_level=int(rng.integers(0, len(self.NOISE_LEVELS))),
            props=props,
        )
        self._last_look = (serial, look)
        return look

    def view(self, serial, image_number):
        rng = np.random.default_rng([self.seed, _VIEW_STREAM, serial, image_number])
        iv = self.image_variation
        values = {"texture_phase": tuple(int(v) for v in rng.integers(0, self.MARGIN, 2)),
                  "noise_phase": tuple(int(v) for v in rng.integers(0, self.MARGIN, 2))}
        if image_number > 0:
            values.update(shift=tuple(float(v) for v in rng.uniform(-1, 1, 2) * (0.08 + 0.09 * iv) * IMAGE_SIZE),
                          angle=float(rng.uniform(-1, 1) * (10 + 22 * iv)),
                          zoom=float(np.exp(rng.uniform(-0.2 - 0.15 * iv, 0.2 + 0.45 * iv))),
                          mirror=bool(rng.random() < 0.5))
        if iv > 0:
            gains = tuple(float(v) for v in 1 + rng.uniform(-0.15, 0.15, 3) * iv)
            values["cast"] = (gains, tuple(float(v) for v in rng.uniform(-15, 15, 3) * iv))
            values["blur"] = 5 if rng.random() < 0.22 * iv else 3
            if rng.random() < 0.45 * iv:
                values["occluder"] = (*(float(v) for v in rng.uniform(-0.9, 0.9, 2)),
                                      *(float(v) for v in rng.uniform(0.3, 0.8, 2)), float(rng.uniform(0, np.pi)),
                                      tuple(int(v) for v in rng.integers(0, 256, 3)))
            values["clutter"] = tuple(_distractor(rng, 6, 16 + 14 * iv) for _ in range(min(4, rng.poisson(0.9 * iv))))
        return View(**values)

    def render(self, style, serial, image_number):
        """JPEG bytes of image `image_number` of product `serial` drawn in `style`."""
        look = self.product_look(serial)
        view = self.view(serial, image_number)
        image = self._draw(style, look, view)
        if view.mirror:
            image = image[:, ::-1]
        image = cv2.GaussianBlur(image, (view.blur, view.blur), 0)  # soften the drawn edges, like a photo
        x, y = view.noise_phase
        noise = self.noise_banks[look.noise_level][y:y + IMAGE_SIZE, x:x + IMAGE_SIZE]
        return self.encode(np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8))

    def _draw(self, style, look, view):
        """The noiseless picture: background, textured object(s), accent mark, occluder and clutter.

        The view's colour cast is applied to every colour before drawing: the same picture as
        casting the drawn one (blur and anti-aliasing mix colours linearly), at no pixel cost.
        """
        s = IMAGE_SIZE
        image = np.empty((s, s, 3), np.uint8)
        image[:] = _cast_color(tuple(b + d for b, d in zip(style.background, look.background_shift)), view.cast)
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
        main_color = _cast_color(_jitter_color(style.main_hsv, look.hsv_shift), view.cast)
        cv2.fillPoly(image, contours, main_color, cv2.LINE_AA)
        if style.texture != "plain":
            mask = np.zeros((s, s), np.uint8)
            cv2.fillPoly(mask, contours, 255)
            x, y = view.texture_phase
            texture = self.textures[style.texture][y:y + s, x:x + s]
            image[(mask > 0) & texture] = _cast_color(_jitter_color(style.texture_hsv, look.hsv_shift), view.cast)
        accent_center = (int(cx + style.accent_offset[0] * radius), int(cy + style.accent_offset[1] * radius))
        cv2.circle(image, accent_center, max(3, int(radius * 0.28)), _cast_color(style.accent_color, view.cast), -1,
                   cv2.LINE_AA)
        if view.occluder:
            dx, dy, half_width, half_height, occluder_angle, color = view.occluder
            plate = self._contours("plate", cx + dx * radius, cy + dy * radius, half_height * radius,
                                   half_width / half_height, occluder_angle)
            cv2.fillPoly(image, plate, _cast_color(color, view.cast), cv2.LINE_AA)
        for shape, x, y, r, color in look.props + view.clutter:
            cv2.fillPoly(image, self._contours(shape, x, y, r, 1.0, 0.0), _cast_color(color, view.cast), cv2.LINE_AA)
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


def _distractor(rng, min_radius, max_radius):
    """A small shape of a random colour somewhere in the picture: (shape, x, y, radius, BGR colour)."""
    shape = str(SHAPES[rng.integers(0, len(SHAPES))])
    x, y = (int(v) for v in rng.integers(0, IMAGE_SIZE, 2))
    radius = int(rng.integers(min_radius, int(max_radius) + 1))
    return shape, x, y, radius, tuple(int(v) for v in rng.integers(0, 256, 3))


def _cast_color(bgr, cast):
    """`bgr` under a view's colour cast (each channel times its gain plus its offset), clipped."""
    if not cast:
        return tuple(min(255, max(0, c)) for c in bgr)
    gains, offsets = cast
    return tuple(min(255, max(0, round(c * g + o))) for c, g, o in zip(bgr, gains, offsets))


def _jitter_color(hsv, shift):
    """BGR colour of `hsv` moved by the per-product (hue, saturation, value) `shift`."""
    return _hsv_to_bgr(hsv[0] + shift[0], hsv[1] + shift[1], hsv[2] + shift[2])


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
    sibling_similarity: float = DEFAULT_SIBLING_SIMILARITY
    ambiguous_share: float = DEFAULT_AMBIGUOUS_SHARE
    ambiguous_sibling_share: float = DEFAULT_AMBIGUOUS_SIBLING_SHARE
    product_variation: float = DEFAULT_PRODUCT_VARIATION
    image_variation: float = DEFAULT_IMAGE_VARIATION

    def __post_init__(self):
        if self.train_products < 0 or self.test_products < 0:
            raise ValueError("product counts must be >= 0")
        if self.train_products + self.test_products == 0:
            raise ValueError("no product to write: train_products and test_products are both 0")
        if self.categories < 1:
            raise ValueError("need at least one category")
        if self.placeholders < 1:
            raise ValueError("need at least one placeholder picture")
        for name in ("duplicate_share", "product_copy_share", "placeholder_share", "sibling_similarity",
                     "ambiguous_share", "ambiguous_sibling_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.product_copy_share + self.placeholder_share > 1.0:
            raise ValueError("product_copy_share + placeholder_share must not exceed 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError("jpeg_quality must be within [1, 100]")
        if self.zipf_exponent < 0:
            raise ValueError("zipf_exponent must be >= 0")
        for name in ("product_variation", "image_variation"):
            if not 0.0 <= getattr(self, name) <= 3.0:
                raise ValueError(f"{name} must be within [0, 3]")


@dataclasses.dataclass(frozen=True)
class SynthImage:
    """One picture and where it comes from.

    `origin` is (serial of the product that first showed it, image number) for rendered
    images and ("placeholder", index) for placeholders; `origin_side` is the side of that
    first product; `reused` is True when these bytes appeared in an earlier product;
    `style_class` is the class id whose style drew it (None for placeholders): another
    class than the product's for ambiguous products.
    """
    picture: bytes
    origin: tuple
    origin_side: str
    reused: bool
    style_class: int = None


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
    """LRU cache of pooled pictures (render results), so popular duplicates are not re-rendered.

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
        self.renderer = ImageRenderer(options.seed, options.jpeg_quality, options.product_variation,
                                      options.image_variation)
        self.styles = category_styles(categories, options.seed, options.sibling_similarity)
        groups = collections.defaultdict(list)
        for class_id, category in enumerate(categories):
            groups[category.level2_index].append(class_id)
        self.siblings = [[k for k in groups[c.level2_index] if k != class_id] for class_id, c in enumerate(categories)]
        self.placeholders = [self.renderer.placeholder(k) for k in range(options.placeholders)]
        self.placeholders_seen = set()
        self.cache = _RenderCache(self._render)
        self._last_style = (None, None, None)
        self.image_pools = [_Pool(IMAGE_POOL_SIZE) for _ in categories]
        self.product_pools = [_Pool(PRODUCT_POOL_SIZE) for _ in categories]

    def style_class(self, class_id, serial):
        """Class whose style draws product `serial` of class `class_id`: its own, or for an
        ambiguous product a sibling's (`ambiguous_sibling_share` of them) or any other class's."""
        if self._last_style[:2] == (class_id, serial):  # the images of a product come one after the other
            return self._last_style[2]
        style_class = class_id
        n_classes = len(self.styles)
        rng = np.random.default_rng([self.options.seed, _AMBIGUITY_STREAM, serial])
        if n_classes > 1 and rng.random() < self.options.ambiguous_share:
            siblings = self.siblings[class_id]
            if siblings and rng.random() < self.options.ambiguous_sibling_share:
                style_class = siblings[int(rng.integers(0, len(siblings)))]
            else:
                other = int(rng.integers(0, n_classes - 1))
                style_class = other + (other >= class_id)
        self._last_style = (class_id, serial, style_class)
        return style_class

    def _render(self, class_id, serial, number):
        """(JPEG bytes, style class) of image `number` of product `serial` of class `class_id`."""
        style_class = self.style_class(class_id, serial)
        return self.renderer.render(self.styles[style_class], serial, number), style_class

    def _pooled_image(self, class_id, origin, origin_side):
        picture, style_class = self.cache.get((class_id, *origin))
        return SynthImage(picture, origin, origin_side, True, style_class)

    def product_images(self, serial, side, class_id, rng):
        """(images, copied, placeholder) of a new product of class `class_id` on `side`."""
        kind = rng.random()
        if kind >= 1.0 - self.options.placeholder_share:
            return (self._placeholder_image(side, rng),), False, True
        copy_source = self.product_pools[class_id].pick(rng) if kind < self.options.product_copy_share else None
        if copy_source is not None:
            images = tuple(self._pooled_image(class_id, origin, origin_side) for origin, origin_side in copy_source)
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
                images.append(self._pooled_image(class_id, *candidate))
            else:
                origin = (serial, number)
                rendered = self._render(class_id, *origin)
                if pool.offer((origin, side), rng):
                    self.cache.put((class_id, *origin), rendered)
                images.append(SynthImage(rendered[0], origin, side, False, rendered[1]))
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
        off_style = [image.style_class not in (None, product.class_id) for image in product.images]
        self.counts["off_style_images"] += sum(off_style)
        self.counts["off_style_products"] += any(off_style)
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
                "placeholder_images", "test_images_from_train", "off_style_products", "off_style_images")},
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
        f"ambiguous: {summary['off_style_products']:,} products ({summary['off_style_images']:,} images) "
        f"drawn in another category's style",
        f"speed: {speed['seconds']:.1f} s, {speed['mb_per_second']} MB/s, {speed['images_per_second']} images/s",
    ])


def parse_args(argv=None):
    defaults = SynthOptions()
    parser = argparse.ArgumentParser(
        prog="synth",
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
    difficulty = parser.add_argument_group("difficulty (defaults: a tiny CNN reaches roughly 0.55-0.85 image accuracy)")
    difficulty.add_argument("--sibling-similarity", type=float, default=defaults.sibling_similarity,
                            help="how much of its level-2 group's style a category shares: 0 distinct, 1 identical")
    difficulty.add_argument("--ambiguous-share", type=float, default=defaults.ambiguous_share,
                            help="chance that a product is drawn in another category's style (keeping its label)")
    difficulty.add_argument("--ambiguous-sibling-share", type=float, default=defaults.ambiguous_sibling_share,
                            help="share of ambiguous products that take a sibling's style rather than any category's")
    difficulty.add_argument("--product-variation", type=float, default=defaults.product_variation,
                            help="spread of products around their category's style (pose, colour, props), 0 to 3")
    difficulty.add_argument("--image-variation", type=float, default=defaults.image_variation,
                            help="spread of images around their product (view, colour cast, blur, occluder, "
                                 "clutter), 0 to 3")
    add_common_options(parser)
    return parser.parse_args(argv)


@command("synth")
def main(argv=None):
    args = parse_args(argv)
    values = vars(args)
    out_dir, progress = values.pop("out"), values.pop("progress")
    values.pop("debug")
    options = SynthOptions(**values)
    for option, count, name in (("--train-products", options.train_products, "train.bson"),
                                ("--test-products", options.test_products, "test.bson")):
        if count == 0:     # a test-only set is a use (the predictor's benchmark); an empty file is not a surprise
            print(f"synth: warning: {option} 0: {os.path.join(out_dir, name)} will hold no product", file=sys.stderr,
                  flush=True)
    with exclusive_output(out_dir):
        summary = generate(out_dir, options, progress=progress)
    print(format_summary(summary))
    print(f"written to {os.path.abspath(out_dir)}")


if __name__ == "__main__":
    main()
