"""Stand-in of modules/deepbooru.py: ``model`` with the real ``start`` / ``stop`` / ``tag(pil_image)`` /
``tag_multi(pil_image, force_disable_ranks=False)``; tags follow the image's colours. Set
``model.weights_present = False`` to get the error a missing, undownloadable weights file gives."""

from modules import shared


class DeepDanbooru:
    def __init__(self):
        self.weights_present = True
        self.loaded = False
        self.calls = []

    def start(self):
        if not self.weights_present:
            raise FileNotFoundError("model-resnet_custom_v3.pt not found and could not be downloaded")
        self.loaded = True
        self.calls.append("start")

    def stop(self):
        self.loaded = False
        self.calls.append("stop")

    def tag(self, pil_image):
        self.start()
        res = self.tag_multi(pil_image)
        self.stop()
        return res

    def tag_multi(self, pil_image, force_disable_ranks=False):
        if not self.loaded:
            raise RuntimeError("DeepDanbooru model is not loaded")
        self.calls.append(("tag_multi", force_disable_ranks))
        r, g, b = pil_image.convert("RGB").resize((1, 1)).getpixel((0, 0))
        tags = ["1girl", "solo"]
        tags.append("white background" if min(r, g, b) > 230 else "outdoors")
        tags.append("smile" if g > r else "expressionless")
        ranks = getattr(shared.opts, "interrogate_return_ranks", False) and not force_disable_ranks
        return ", ".join(f"({t}:0.900)" if ranks else t for t in tags)


model = DeepDanbooru()
