"""`samus download`: fetch SAM ViT-B (to initialise vit_b training)."""
from ..checkpoint import download_sam_vit_b


def register(subparsers) -> None:
    p = subparsers.add_parser("download", help="download SAM ViT-B (to initialise vit_b training); needs internet")
    p.add_argument("--out", default="checkpoints/sam_vit_b_01ec64.pth")
    p.set_defaults(func=lambda a: print(download_sam_vit_b(a.out)) or 0)
