"""Renders the extension's screenshot offline (run once with the project's venv; the PNG is committed).

What it shows, honestly: not a capture of 3D Slicer (no Slicer here), but what the module draws for one
click. The bundled SAMUS model segments a BUSI test image (samples/busi, CC BY 4.0) from one positive click
placed at the centre of the reference lesion mask; the click is the yellow '+', the model's mask the green
outline and tint. A caption bar under the image says so.
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "benign_3.png"
OUT = ROOT / "slicer_module" / "Screenshots" / "SAMUSSegment_click.png"
CAPTION = ("SAMUS Segment: one positive click -> mask (bundled model, BUSI test image). "
           "Rendered offline with the samus library, not a Slicer screen capture.")


def click_point(reference: np.ndarray) -> tuple:
    """The reference-mask pixel farthest from its border: a click a user would place inside the lesion."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(reference)
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(col), int(row)


def render(image: np.ndarray, mask: np.ndarray, click: tuple, caption: str) -> Image.Image:
    grey = image if image.ndim == 2 else image.mean(axis=-1)
    rgb = np.repeat(grey[..., None], 3, axis=-1).astype(float)
    rgb[mask] = 0.7 * rgb[mask] + 0.3 * np.array([40, 220, 90])
    edge = mask & ~np.pad(mask, 1)[2:, 1:-1] | mask & ~np.pad(mask, 1)[:-2, 1:-1] \
        | mask & ~np.pad(mask, 1)[1:-1, 2:] | mask & ~np.pad(mask, 1)[1:-1, :-2]
    rgb[edge] = [40, 220, 90]
    picture = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    x, y = click
    draw.line([(x - 7, y), (x + 7, y)], fill=(255, 230, 40), width=3)
    draw.line([(x, y - 7), (x, y + 7)], fill=(255, 230, 40), width=3)
    lines = [""]
    for word in caption.split():  # wrap to the image width (the default font is about 6 px per character)
        if len(lines[-1]) + len(word) + 1 > (picture.width - 12) // 6:
            lines.append("")
        lines[-1] = f"{lines[-1]} {word}".strip()
    text = "\n".join(lines)
    box = draw.multiline_textbbox((0, 0), text)
    canvas = Image.new("RGB", (picture.width, picture.height + box[3] + 12), (24, 24, 24))
    canvas.paste(picture, (0, 0))
    ImageDraw.Draw(canvas).multiline_text((6, picture.height + 6), text, fill=(230, 230, 230))
    return canvas


def main() -> None:
    import samus

    image = np.asarray(Image.open(ROOT / "samples" / "busi" / "images" / SAMPLE))
    reference = np.asarray(Image.open(ROOT / "samples" / "busi" / "masks" / SAMPLE)) > 0
    predictor = samus.SamusPredictor(samus.load_default_model(), device="cpu", precision="fp32")
    predictor.set_image(image, key=SAMPLE)
    click = click_point(reference)
    mask, score, _ = predictor.predict(point_coords=[list(click)], point_labels=[1])
    dice = 2 * (mask & reference).sum() / (mask.sum() + reference.sum())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    render(image, mask, click, CAPTION).save(OUT, optimize=True)
    print(f"wrote {OUT} (click {click}, score {score:.2f}, Dice to the reference {dice:.3f})")


if __name__ == "__main__":
    main()
