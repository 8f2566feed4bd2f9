"""MONAI Label's `random` strategy without its 500.

It weighs each unlabelled image by the seconds since this strategy last picked it; when every candidate
was picked within the current second (one unlabelled image, asked for twice quickly), all weights are 0
and `random.choices` raises ValueError, which MONAI Label answers with 500. Then any candidate will do.
"""
import random

from monailabel.tasks.activelearning.random import Random


class RandomStrategy(Random):
    def __call__(self, request, datastore):
        try:
            return super().__call__(request, datastore)
        except ValueError:
            images = datastore.get_unlabeled_images(request.get("label_tag"), request.get("labels"))
            return {"id": random.choice(images), "weight": 0} if images else None
