"""The weights installed with the samus package."""
import os

import samus


def bundled(name: str) -> str:
    from ..app_conf import ConfError

    path = str(samus.BUNDLED_MODELS[name])
    if not os.path.isfile(path):
        raise ConfError(f"the bundled {name} model {path} is missing and no --conf checkpoint was given; pass "
                        f"--conf checkpoint PATH (an official SAMUS .pth, a SAM ViT-B .pth, LiteMedSAM's "
                        f"lite_medsam.pth or a samus checkpoint)")
    return path


def bundled_publish_name(name: str) -> str:
    return f"samus-{name}.pt"
