"""Chat templates of the tiny test tokenizers, in the formats of the real checkpoints.

Two formats cover every family: Vicuna ("{system} USER: <video>\\n{text} ASSISTANT:", the
LLaVA checkpoints) and ChatML ("<|im_start|>role\\n...<|im_end|>\\n", Qwen, LLaVA-OneVision,
InternVL). Each is a function of what a ``{"type": "image"}`` / ``{"type": "video"}``
content item becomes; the named constants are the variants several families share.
Content may also be a plain string. Several text items are joined with a space (Vicuna)
or concatenated (ChatML), as the real templates do.
"""

from __future__ import annotations

__all__ = ["QWEN_IMAGE", "QWEN_TEMPLATE", "QWEN_VIDEO", "VICUNA_TEMPLATE", "chatml_template", "vicuna_template"]


def vicuna_template(image_marker: str = "<image>\n", video_marker: str = "<video>\n") -> str:
    """A Vicuna-style Jinja template, media first, like llava-hf's LLaVA-NeXT-Video template.

    Renders ``"{system} USER: {media}{user text} ASSISTANT:"``: image items become
    ``image_marker`` and video items ``video_marker`` (images first); finished assistant
    turns end in ``</s>``. The tokenizer itself prepends ``<s>`` (like the Llama tokenizer).
    """
    return (
        "{%- for message in messages -%}"
        "{%- if message['content'] is string -%}"
        "{%- set items = [{'type': 'text', 'text': message['content']}] -%}"
        "{%- else -%}{%- set items = message['content'] -%}{%- endif -%}"
        "{%- if message['role'] == 'system' -%}"
        "{%- for item in items if item['type'] == 'text' -%}{{ item['text'] }}{%- endfor -%}"
        "{%- else -%}"
        "{{ ' ' if not loop.first else '' }}{{ message['role'] | upper }}{{ ': ' }}"
        "{%- for item in items if item['type'] == 'image' -%}{{ '" + image_marker + "' }}{%- endfor -%}"
        "{%- for item in items if item['type'] == 'video' -%}{{ '" + video_marker + "' }}{%- endfor -%}"
        "{%- for item in items if item['type'] == 'text' -%}"
        "{{ ' ' if not loop.first else '' }}{{ item['text'] }}"
        "{%- endfor -%}"
        "{%- if message['role'] == 'assistant' -%}{{ '</s>' }}{%- endif -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ ' ASSISTANT:' }}{%- endif -%}"
    )


def chatml_template(image_marker: str, video_marker: str, default_system: str | None) -> str:
    """A ChatML Jinja template rendering media items inline, in content order.

    ``image_marker``/``video_marker`` are what a ``{"type": "image"}`` / ``{"type": "video"}``
    content item becomes; ``default_system`` (if given) is inserted when the conversation
    has no system message, as Qwen2-VL and Qwen2.5-VL do.
    """
    default_block = ""
    if default_system is not None:
        default_block = (
            "{%- if messages[0]['role'] != 'system' -%}"
            "{{ '<|im_start|>system\n" + default_system + "<|im_end|>\n' }}"
            "{%- endif -%}"
        )
    return (
        default_block + "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{%- if message['content'] is string -%}{{ message['content'] }}"
        "{%- else -%}"
        "{%- for item in message['content'] -%}"
        "{%- if item['type'] == 'image' -%}{{ '" + image_marker + "' }}"
        "{%- elif item['type'] == 'video' -%}{{ '" + video_marker + "' }}"
        "{%- elif item['type'] == 'text' -%}{{ item['text'] }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- endif -%}"
        "{{ '<|im_end|>\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
    )


#: LLaVA-NeXT-Video, Video-LLaVA and the toy model: ``"{system} USER: <video>\n{text} ASSISTANT:"``.
VICUNA_TEMPLATE = vicuna_template()
#: What the Qwen processors expand: an image / a video between vision start and end tokens.
QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
QWEN_VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
#: Qwen2-VL and Qwen2.5-VL: media inline, and "You are a helpful assistant." when no system turn.
QWEN_TEMPLATE = chatml_template(QWEN_IMAGE, QWEN_VIDEO, default_system="You are a helpful assistant.")
