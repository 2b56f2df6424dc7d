"""The independent quality measure (stylecast.evaluation.independent) and the retraining aids it led to: each
measure moves the way it claims on pictures built to show it, the spot detector finds a stamped disc and not a
photo's own yellow, the band measure finds a darkened edge, the colour transfer keeps structure but not
texture, and the spot loss prices stamps but not washes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from stylecast.evaluation import independent as ind
from stylecast.nets.images import heldout_photos, load_rgb
from stylecast.training.data import load_painting

ROOT = Path(__file__).resolve().parent.parent
STYLES = ROOT / "styles"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = load_rgb(heldout_photos()[0][1], 256)
    return np.asarray(img)[: img.height // 4 * 4, : img.width // 4 * 4].copy()


def _stamp(img: np.ndarray, center: tuple[int, int], r: int = 14, colour: tuple[int, int, int] = (255, 225, 0),
           rim: tuple[int, int, int] = (150, 30, 20)) -> np.ndarray:
    out = img.copy()
    cv2.circle(out, center, r + 2, rim, -1)
    cv2.circle(out, center, r, colour, -1)
    return out


@pytest.mark.parametrize("colour, rim", [((255, 225, 0), (150, 30, 20)), ((120, 60, 200), (255, 225, 0))])
def test_a_stamped_disc_of_any_colour_is_a_spot_and_the_photo_has_none(photo, colour, rim):
    """The yellow disc with a red rim that starter8's composition_viii stamped, and the purple one with a
    yellow rim that a retraining pricing yellow spots stamped instead."""
    h, w = photo.shape[:2]
    stamped = _stamp(photo, (w // 3, h // 3), colour=colour, rim=rim)
    found = ind.spots(stamped, photo)
    assert len(found) == 1 and abs(found[0][0] - w // 3) <= 3 and abs(found[0][1] - h // 3) <= 3, found
    assert ind.spots(photo, photo) == []
    assert ind.spots(stamped, stamped) == [], "a disc the photo has is not a stamp"


def test_a_pale_yellow_disc_on_a_beige_ground_is_found_in_chroma():
    """composition_viii's remaining stamps: a soft pale yellow disc on a pale ground of about the same grey. The
    grayscale Hough misses it; the chroma channel finds it, and a plain ground has none."""
    ground = np.full((128, 128, 3), (236, 228, 206), np.uint8)
    ground += np.random.default_rng(0).integers(0, 4, ground.shape, dtype=np.uint8)
    disc = ground.copy()
    cv2.circle(disc, (70, 50), 10, (250, 232, 80), -1)
    disc = cv2.GaussianBlur(disc, (5, 5), 0)  # the network's stamps have soft edges
    gray = cv2.cvtColor(disc, cv2.COLOR_RGB2GRAY)
    assert int(gray[50, 70]) - int(gray[50, 20]) < 12, "the disc is not meant to stand out in grey"
    assert ind._hough(gray) == []
    found = ind.spots(disc, ground)
    assert len(found) == 1 and abs(found[0][0] - 70) <= 3 and abs(found[0][1] - 50) <= 3, found
    assert ind.spots(ground, ground) == []


def test_a_darkened_top_edge_is_a_band(photo):
    dark = photo.astype(np.int16)
    dark[:2] -= 40
    band = ind.edge_band(dark.clip(0, 255).astype(np.uint8), photo)
    assert band["top"] < -30 and max(abs(band[k]) for k in ("bottom", "left", "right")) < 1, band


def test_the_colour_transfer_keeps_structure_and_moves_colour_not_texture(photo):
    painting = np.asarray(load_painting(STYLES / "pere_tanguy.jpg", 384))
    ct = ind.reinhard(photo, painting)
    assert ind.edge_f1(ct, photo) > 0.85 and ind.ssim(ct, photo) > 0.6
    assert ind.edge_f1(np.full_like(photo, 128), photo) < 0.05
    lab_p = ind.lab(painting)[::7]
    assert ind.sliced_wasserstein(ind.lab(ct), lab_p) < 0.6 * ind.sliced_wasserstein(ind.lab(photo), lab_p)


def test_the_vgg_gram_ratio_prefers_the_painting_to_the_photo(photo):
    grams = ind.VGGGrams()
    painting = ind.Painting(STYLES / "starry_night.jpg", 128, grams)
    small = cv2.resize(photo, (128, 128 * photo.shape[0] // photo.shape[1] // 4 * 4))
    own = ind.VGGGrams.distance(grams(small), painting.grams)
    crop = cv2.resize(painting.image, small.shape[1::-1])
    assert ind.VGGGrams.distance(grams(crop), painting.grams) < 0.5 * own


def test_the_spot_loss_prices_a_stamp_and_not_a_wash(photo):
    from stylecast.nets.losses import spot_loss

    t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float()  # noqa: E731
    wash = (0.6 * photo + 0.4 * np.array([240.0, 210.0, 40.0])).astype(np.uint8)  # a yellow glaze over it all
    h, w = photo.shape[:2]
    assert float(spot_loss(t(photo), t(photo))) == 0.0
    assert float(spot_loss(t(wash), t(photo))) < 1e-6
    assert float(spot_loss(t(_stamp(photo, (w // 2, h // 2))), t(photo))) > 1e-5


def test_a_painting_can_lose_more_of_one_side():
    """shrine_in_snow's dark top margin (the print's) is cut from the target as its targets.json says."""
    from stylecast.training.data import PAINTING_INSET, painting_insets

    f = painting_insets(STYLES / "shrine_in_snow.jpg")
    assert f["top"] >= 0.07 and f["bottom"] == PAINTING_INSET
    top = np.asarray(load_painting(STYLES / "shrine_in_snow.jpg").convert("L"), dtype=np.float32)[:4].mean()
    raw = np.asarray(load_rgb(STYLES / "shrine_in_snow.jpg").convert("L"), dtype=np.float32)
    assert raw[14:18].mean() < 60 and top > 110, (raw[14:18].mean(), top)


def test_a_left_out_disc_changes_no_statistic_of_the_target(tmp_path):
    """targets.json's leave_out: the Gram target of a blue ground holding a red disc, with the disc left out,
    is the plain blue ground's; kept in, it is not (composition_viii's circles leave its target this way)."""
    from PIL import Image
    from stylecast.nets.losses import gram_matrix
    from stylecast.training.data import painting_mask

    ground = np.zeros((200, 300, 3), np.uint8)
    ground[:] = (40, 60, 200)
    painting = ground.copy()
    cv2.circle(painting, (150, 100), 30, (220, 30, 20), -1)
    Image.fromarray(painting).save(tmp_path / "disc.png")
    Image.fromarray(ground).save(tmp_path / "ground.png")
    (tmp_path / "targets.json").write_text('{"disc.png": {"leave_out": [[0.5, 0.5, 0.12]]}}')
    feats = lambda name: torch.from_numpy(  # noqa: E731
        np.asarray(load_painting(tmp_path / name, 150), np.float32)).permute(2, 0, 1)[None] / 255
    mask = painting_mask(tmp_path / "disc.png", 150)
    assert mask is not None and painting_mask(tmp_path / "ground.png") is None
    assert float(mask.mean()) < 0.97 and float(mask[mask.shape[0] // 2, mask.shape[1] // 2]) == 0.0
    plain = gram_matrix(feats("ground.png"))
    assert torch.allclose(gram_matrix(feats("disc.png"), mask), plain, atol=2e-3)
    assert (gram_matrix(feats("disc.png")) - plain).abs().max() > 1e-2


def test_composition_viii_leaves_its_circles_out_of_its_target():
    """The big black disc at the top left is out of the target; the ground below the checkerboard is in."""
    from stylecast.training.data import painting_mask

    mask = painting_mask(STYLES / "composition_viii.jpg")
    h, w = mask.shape
    assert float(mask[int(0.16 * h), int(0.09 * w)]) == 0.0 and float(mask[int(0.9 * h), int(0.2 * w)]) == 1.0
    assert 0.7 < float(mask.mean()) < 0.9


def test_a_round_patch_over_the_photos_own_object_is_not_a_stamp():
    """A network that simplifies the photo's tree crown into a round dark patch drew no stamp: the photo has
    the crown there (lobed, so not one of its circles). The same patch on the plain sky is one."""
    rng = np.random.default_rng(0)
    photo = np.full((128, 192, 3), (200, 215, 235), np.uint8)
    theta = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    lobes = 14 * (1 + 0.25 * np.sin(5 * theta))
    crown = np.stack([50 + lobes * np.cos(theta), 64 + lobes * np.sin(theta)], 1).astype(np.int32)
    cv2.fillPoly(photo, [crown], (40, 70, 40))
    photo = (photo + rng.integers(0, 4, photo.shape)).astype(np.uint8)
    assert ind.circles(photo) == [], "the lobed crown is not meant to be one of the photo's circles"
    output = photo.copy()
    for centre in ((50, 64), (140, 64)):
        cv2.circle(output, centre, 18, (30, 60, 35), -1)
    output = cv2.GaussianBlur(output, (3, 3), 0)
    drawn = [(x, y) for x, y, _ in ind.circles(output)]
    assert any(abs(x - 50) <= 3 and abs(y - 64) <= 3 for x, y in drawn), "both discs are circles of the output"
    found = ind.spots(output, photo)
    assert len(found) == 1 and abs(found[0][0] - 140) <= 3 and abs(found[0][1] - 64) <= 3, found
