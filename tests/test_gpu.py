import pytest

from modal_gpu_action.settings.gpu import GPU_TYPES, PRICE_PER_SECOND, GpuSpecError, parse_gpu_spec


@pytest.mark.parametrize("text", [t.lower() for t in GPU_TYPES] + list(GPU_TYPES))
def test_every_modal_type_is_accepted_in_any_case(text: str) -> None:
    spec = parse_gpu_spec(text)
    assert str(spec) == text.upper()
    assert spec.modal_argument() == text.upper()


def test_count_and_fallback_list_give_modal_the_right_argument() -> None:
    assert parse_gpu_spec("h100:8").modal_argument() == "H100:8"
    fallback = parse_gpu_spec("H100, a100-80gb:2")
    assert fallback.is_fallback_list
    assert fallback.modal_argument() == ["H100", "A100-80GB:2"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("X100", "unknown GPU type 'X100'"),
        ("H100:0", "count '0' for H100 must be a whole number from 1 to 8"),
        ("H100:9", "from 1 to 8"),
        ("A10G:5", "from 1 to 4"),
        ("H100:two", "count 'two'"),
        ("", "expected T4, L4"),
        ("L4,,T4", "expected T4, L4"),
        ("L4,L4", "L4 is listed twice"),
    ],
)
def test_bad_specs_name_the_input_and_what_is_accepted(text: str, fragment: str) -> None:
    with pytest.raises(GpuSpecError) as raised:
        parse_gpu_spec(text)
    message = str(raised.value)
    assert message.startswith(f"invalid value {text!r} for input 'gpu'")
    assert fragment in message
    assert "\n" not in message


def test_prices_scale_with_count_and_fallbacks_take_the_dearest() -> None:
    assert parse_gpu_spec("H100:2").price_per_second() == pytest.approx(
        2 * PRICE_PER_SECOND["H100"]
    )
    assert parse_gpu_spec("H100!").price_per_second() == PRICE_PER_SECOND["H100"]
    assert parse_gpu_spec("A100").price_per_second() == PRICE_PER_SECOND["A100-40GB"]
    assert parse_gpu_spec("L4,H100").price_per_second() == PRICE_PER_SECOND["H100"]
    # Each documented type has a price, so every run can show a cost.
    assert all(parse_gpu_spec(t).price_per_second() for t in GPU_TYPES)
