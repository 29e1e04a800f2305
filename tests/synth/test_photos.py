"""Photo sources: packaged photos, --photos DIR (corrupt / non-image files named and skipped), crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inpaintseg.errors import DataError, InpaintsegError
from inpaintseg.synth.photos import (MIN_PHOTO_SIDE, Photo, PhotoCache, find_photos, load_photo, packaged_photos,
                                     random_crop, user_photos)


def test_packaged_photos_come_from_three_packages():
    names = {p.name for p in packaged_photos()}
    assert {"skimage/astronaut.png", "sklearn/china.jpg", "matplotlib/grace_hopper.jpg"} <= names
    assert all(p.path.is_file() for p in packaged_photos())


@pytest.fixture
def photo_dir(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    cv2.imwrite(str(root / "a.png"), rng.integers(0, 256, (40, 90, 3), dtype=np.uint8))
    cv2.imwrite(str(root / "sub" / "b.jpg"), rng.integers(0, 256, (300, 200, 3), dtype=np.uint8))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (root / "notes.txt").write_text("not a photo")
    cv2.imwrite(str(root / "tiny.png"), np.zeros((10, 10, 3), np.uint8))
    (root / ".hidden.png").write_bytes(b"")
    return root


def test_user_photos_skip_and_name_bad_files(photo_dir):
    messages = []
    photos = user_photos(photo_dir, warn=messages.append)
    assert [p.name for p in photos] == ["photos/a.png", "photos/sub/b.jpg"]
    text = "\n".join(messages)
    assert "broken.png" in text and "cannot be decoded" in text
    assert "notes.txt" in text and "not an image file" in text
    assert "tiny.png" in text and f"smaller than {MIN_PHOTO_SIDE} px" in text
    assert ".hidden" not in text and len(messages) == 3


def test_find_photos_replaces_or_adds(photo_dir):
    only_user = find_photos(photo_dir, warn=lambda m: None)
    both = find_photos(photo_dir, packaged=True, warn=lambda m: None)
    assert len(only_user) == 2
    assert len(both) == len(packaged_photos()) + 2 and both[-1].name == "photos/sub/b.jpg"


def test_photo_folder_errors(tmp_path):
    with pytest.raises(InpaintsegError, match="not a folder"):
        user_photos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(InpaintsegError, match="no usable photo found"):
        user_photos(tmp_path / "empty", warn=lambda m: None)


def test_npz_photos_are_read_without_pickle(tmp_path):
    grey = np.linspace(-1.0, 3.0, 64 * 48).reshape(64, 48)
    np.savez(tmp_path / "float.npz", data=grey)
    image = load_photo(Photo("pywt/float.npz", tmp_path / "float.npz"))
    assert image.shape == (64, 48, 3) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255  # min-max scaled
    np.savez(tmp_path / "objects.npz", data=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="objects.npz"):
        load_photo(Photo("pywt/objects.npz", tmp_path / "objects.npz"))


def test_random_crop_is_multi_scale():
    photo = np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    sides = set()
    for seed in range(40):
        crop, info = random_crop(np.random.default_rng(seed), photo, 64)
        assert crop.shape == (64, 64, 3) and crop.flags.c_contiguous
        y, x, side = info["crop"]
        assert 0 <= y <= 400 - side and 0 <= x <= 600 - side and 100 <= side <= 400
        sides.add(side)
    assert max(sides) > 2 * min(sides)


def test_photo_cache_keeps_a_bounded_number(photo_dir):
    photos = user_photos(photo_dir, warn=lambda m: None)
    cache = PhotoCache(photos, capacity=1)
    first = cache.image(photos[0])
    cache.image(photos[1])
    assert len(cache._images) == 1
    assert np.array_equal(cache.image(photos[0]), first)


def test_photo_cache_keeps_a_bounded_number_of_bytes(photo_dir):
    photos = user_photos(photo_dir, warn=lambda m: None)   # a: 40x90 (10,800 bytes), b: 300x200 (180,000)
    cache = PhotoCache(photos, capacity=10, max_bytes=100_000)
    cache.image(photos[0])
    assert cache.nbytes == 40 * 90 * 3
    cache.image(photos[1])                                  # over the byte cap: a goes, b (the newest) stays
    assert list(cache._images) == [photos[1].name] and cache.nbytes == 300 * 200 * 3


def test_several_photo_folders_are_pooled_with_distinct_names(photo_dir, tmp_path):
    second = tmp_path / "more"
    second.mkdir()
    cv2.imwrite(str(second / "a.png"), np.full((64, 64, 3), 7, np.uint8))  # the same file name as in photo_dir
    photos = find_photos([photo_dir, second, photo_dir / "."], warn=lambda m: None)  # a repeat counts once
    assert [p.name for p in photos] == ["photos/a.png", "photos/sub/b.jpg", "photos2/a.png"]
    assert [p.name for p in find_photos(photo_dir, warn=lambda m: None)] == ["photos/a.png", "photos/sub/b.jpg"]


def test_photo_cache_shrinks_large_photos_to_the_short_side_cap(photo_dir):
    photos = user_photos(photo_dir, warn=lambda m: None)   # a: 90x40, b: 200x300 (w x h)
    cache = PhotoCache(photos, max_short_side=100)
    assert cache.image(photos[0]).shape == (40, 90, 3)      # short side 40 <= 100: kept whole
    assert cache.image(photos[1]).shape == (150, 100, 3)    # short side 200 -> 100, aspect kept
