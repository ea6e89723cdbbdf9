"""Chinese: numeral + measure word + colour 的 + size + noun, no spaces; 两 (not 二) before
a measure word; location as "X在Y的左边"."""

from __future__ import annotations

from ..scene import ObjectGroup, Scene
from .common import plan_sentence

PHOTO_PREFIX = "照片上"

# shape -> (noun, measure word)
NOUNS = {
    "circle": ("圆形", "个"),
    "square": ("方块", "个"),
    "triangle": ("三角形", "个"),
    "star": ("星星", "颗"),
    "heart": ("爱心", "个"),
    "cloud": ("云朵", "朵"),
    "bow_tie": ("领结", "个"),
    "bow_weapon": ("弓", "把"),
    "bat_animal": ("蝙蝠", "只"),
    "bat_club": ("球棒", "根"),
    "nut_food": ("坚果", "颗"),
    "nut_hardware": ("螺母", "个"),
    "crane_bird": ("鹤", "只"),
    "crane_machine": ("起重机", "台"),
}
COLOURS = {
    "red": "红色", "blue": "蓝色", "green": "绿色", "yellow": "黄色",
    "black": "黑色", "white": "白色", "brown": "棕色", "grey": "灰色",
}
SIZES = {"small": "小", "big": "大"}
NUMBERS = {1: "一", 2: "两", 3: "三"}
# Localiser after "在Y的".
RELATIONS = {"left_of": "左边", "right_of": "右边", "above": "上面", "below": "下面", "next_to": "旁边"}


def noun_phrase(group: ObjectGroup) -> str:
    noun, measure = NOUNS[group.shape]
    return f"{NUMBERS[group.count]}{measure}{COLOURS[group.colour]}的{SIZES[group.size]}{noun}"


def body(scene: Scene) -> str:
    plan = plan_sentence(scene)
    text = noun_phrase(plan.figure)
    if plan.ground is not None:
        text += f"在{noun_phrase(plan.ground)}的{RELATIONS[plan.relation]}"
    extras = [noun_phrase(g) for g in plan.extras]
    if extras:
        # "，还有X" / "，还有X和Y" / "，还有X、Y和Z"
        listed = extras[0] if len(extras) == 1 else "、".join(extras[:-1]) + "和" + extras[-1]
        text += f"，还有{listed}"
    return text


def realise(scene: Scene, family: str) -> str:
    if family == "photo_shows":
        return f"{PHOTO_PREFIX}有{body(scene)}。"
    if family == "there_is":
        return f"这里有{body(scene)}。"
    if family == "picture_of":
        return f"图片里是{body(scene)}。"
    if family == "in_picture":
        return f"图中有{body(scene)}。"
    raise ValueError(f"unknown template family {family!r}")
