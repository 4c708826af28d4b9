"""Bad requests get a clear message naming the limit; nothing is silently corrected; the next request works."""

import pytest

from harness.compare.validation import MAX_PROMPT_CHARS, MAX_SEED, InvalidRequest, Limits, validate_request

LIMITS = Limits(sizes=(128, 512))
GOOD = dict(prompt="cartoon bird", negative_prompt="", seed=42, steps=20, guidance_scale=7.5, height=512, width=512)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "   \n"}, "prompt is empty"),
        ({"prompt": None}, "prompt is empty"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, f"limit is {MAX_PROMPT_CHARS}"),
        ({"negative_prompt": "y" * (MAX_PROMPT_CHARS + 5)}, f"limit is {MAX_PROMPT_CHARS}"),
        ({"seed": -1}, f"between 0 and {MAX_SEED}"),
        ({"seed": MAX_SEED + 1}, f"between 0 and {MAX_SEED}"),
        ({"seed": "abc"}, "seed must be a number"),
        ({"seed": 1.5}, "seed must be a whole number"),
        ({"steps": 0}, "steps must be between 1 and 50"),
        ({"steps": 51}, "steps must be between 1 and 50"),
        ({"steps": "many"}, "steps must be a number"),
        ({"steps": float("nan")}, "steps must be a finite number"),
        ({"guidance_scale": 1.0}, "guidance must be above 1 and at most 20"),
        ({"guidance_scale": 25}, "guidance must be above 1 and at most 20"),
        ({"guidance_scale": None}, "guidance must be a number"),
        ({"height": 130, "width": 130}, "multiple of 8"),
        ({"height": 256, "width": 256}, "256x256 is not offered; the rows are compiled for 128x128, 512x512"),
        ({"height": 512, "width": 128}, "not offered"),
        ({"scheduler": "lms"}, "unknown scheduler 'lms'"),
    ],
)
def test_bad_request_names_the_limit(change, fragment):
    with pytest.raises(InvalidRequest, match=None) as info:
        validate_request(**{**GOOD, **change}, limits=LIMITS)
    assert fragment in str(info.value)


def test_good_request_is_kept_as_given():
    request = validate_request(**GOOD, limits=LIMITS)
    assert (request.prompt, request.seed, request.steps, request.guidance_scale) == ("cartoon bird", 42, 20, 7.5)
    assert (request.height, request.width, request.scheduler) == (512, 512, "dpm++")
