"""Stand-in of modules/interrogate.py: ``InterrogateModels(content_dir).interrogate(pil_image)`` returns a
sentence, and — as the real one — reports a failure by appending ``"<error>"`` instead of raising
(``fail = True`` simulates missing BLIP/CLIP weights)."""


class InterrogateModels:
    def __init__(self, content_dir):
        self.content_dir = content_dir
        self.fail = False
        self.calls = 0

    def interrogate(self, pil_image):
        self.calls += 1
        if self.fail:
            return "<error>"
        w, h = pil_image.size
        return f"a portrait of a woman standing in a park, {'wide' if w > h else 'tall'} shot"
