"""MVBench (Li et al., 2024): twenty temporal tasks over eleven source datasets.

Layout (the Hugging Face dataset ``OpenGVLab/MVBench`` with its videos unpacked)::

    <root>/json/<task>.json                 one JSON list per task
    <root>/video/<source folder>/<video>    e.g. video/star/Charades_v1_480/, video/clevrer/video_validation/

Four tasks restrict each question to its ``start``/``end`` seconds (Action Sequence,
Action Prediction, Object Interaction, Episodic Reasoning); Episodic Reasoning's videos
are folders of JPEG frames at 3 fps. The prompt is the paper's (MVBench's own evaluation
prompt, Sec. 4).
"""

from __future__ import annotations

from videolens.data.mvbench_format import TaskSource, register_mvbench_style

_CHARADES = "star/Charades_v1_480"
_CLEVRER = "clevrer/video_validation"
_PERCEPTION = "perception/videos"

#: Task name -> annotation file and video folder, in id order (alphabetical).
TASKS: dict[str, TaskSource] = {
    "Action Antonym": TaskSource("action_antonym.json", "ssv2_video"),
    "Action Count": TaskSource("action_count.json", _PERCEPTION),
    "Action Localization": TaskSource("action_localization.json", "sta/sta_video", bounded=True),
    "Action Prediction": TaskSource("action_prediction.json", _CHARADES, bounded=True),
    "Action Sequence": TaskSource("action_sequence.json", _CHARADES, bounded=True),
    "Character Order": TaskSource("character_order.json", _PERCEPTION),
    "Counterfactual Inference": TaskSource("counterfactual_inference.json", _CLEVRER),
    "Egocentric Navigation": TaskSource("egocentric_navigation.json", "vlnqa"),
    "Episodic Reasoning": TaskSource("episodic_reasoning.json", "tvqa/frames_fps3_hq", bounded=True, frame_rate=3.0),
    "Fine-grained Action": TaskSource("fine_grained_action.json", "Moments_in_Time_Raw/videos"),
    "Fine-grained Pose": TaskSource("fine_grained_pose.json", "nturgbd"),
    "Moving Attribute": TaskSource("moving_attribute.json", _CLEVRER),
    "Moving Count": TaskSource("moving_count.json", _CLEVRER),
    "Moving Direction": TaskSource("moving_direction.json", _CLEVRER),
    "Object Existence": TaskSource("object_existence.json", _CLEVRER),
    "Object Interaction": TaskSource("object_interaction.json", _CHARADES, bounded=True),
    "Object Shuffle": TaskSource("object_shuffle.json", _PERCEPTION),
    "Scene Transition": TaskSource("scene_transition.json", "scene_qa/video"),
    "State Change": TaskSource("state_change.json", _PERCEPTION),
    "Unexpected Action": TaskSource("unexpected_action.json", "FunQA_test/test"),
}


BENCHMARK = register_mvbench_style(
    "mvbench", "MVBench", TASKS, layout="<root>/json/<task>.json and <root>/video/<source folder>/<video>"
)
