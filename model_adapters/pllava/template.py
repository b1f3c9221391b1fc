"""PLLaVA's chat template, kept apart from :mod:`model_adapters.pllava.modeling` so that reading it
imports no transformers.

Vicuna style, ``"{system} USER: <image>\\n{text} ASSISTANT:"``: PLLaVA's prompt carries ONE
``<image>`` placeholder per video, so image and video items both become ``<image>\\n``.
"""

from videolens.testing.templates import vicuna_template

PLLAVA_CHAT_TEMPLATE = vicuna_template(image_marker="<image>\n", video_marker="<image>\n")
