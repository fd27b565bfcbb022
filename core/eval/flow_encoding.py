"""Round-trip error of the flow <-> image encoding: `python -m core.eval.flow_encoding` prints the table.

For each scale the flow components run uniformly over [-scale, scale] through
:func:`core.flow.encoding.encode_flow` / :func:`~core.flow.encoding.decode_flow` (float) and their uint8
versions; the errors are set against the analytic bound :func:`core.flow.encoding.uint8_error_bound_px`,
at full scale and for small motions (|d| <= 1 px).
"""

from __future__ import annotations

import numpy as np

from core.eval import report
from core.flow.encoding import (
    ENCODING_NAME,
    decode_flow,
    decode_flow_uint8,
    encode_flow,
    encode_flow_uint8,
    uint8_error_bound_px,
)

SCALES_PX = (8.0, 16.0, 32.0)


def round_trip_errors(scales_px: tuple[float, ...] = SCALES_PX, samples: int = 200_001) -> list[dict]:
    """Measured round-trip errors (px) of the float and uint8 paths at each scale.

    Each row: scale_px; float_max (encode -> decode, over components uniform in [-scale, scale]);
    uint8_max, uint8_mean and uint8_bound (the analytic `uint8_error_bound_px` at full scale);
    uint8_max_small (max error over |d| <= 1 px) against its bound uint8_bound_small.
    """
    rows = []
    for scale in scales_px:
        components = np.linspace(-scale, scale, samples, dtype=np.float32)
        flows = np.stack([components, components[::-1]], axis=-1)[None]  # (1,N,2)
        float_err = np.abs(decode_flow(encode_flow(flows, scale), scale) - flows)
        uint8_err = np.abs(decode_flow_uint8(encode_flow_uint8(flows, scale), scale) - flows)
        small = np.abs(flows) <= 1.0
        rows.append(
            {
                "scale_px": float(scale),
                "float_max": float(float_err.max()),
                "uint8_max": float(uint8_err.max()),
                "uint8_mean": float(uint8_err.mean()),
                "uint8_bound": float(uint8_error_bound_px(scale, scale)),
                "uint8_max_small": float(uint8_err[small].max()),
                "uint8_bound_small": float(uint8_error_bound_px(1.0, scale)),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = report.parser("flow_encoding", __doc__.splitlines()[0])
    parser.add_argument(
        "--scales", type=float, nargs="+", default=list(SCALES_PX), help="scales in px to measure"
    )
    args = parser.parse_args(argv)
    rows = round_trip_errors(tuple(args.scales))
    print(f"Flow encoding {ENCODING_NAME}: round-trip error (px)")
    columns = [
        ("scale px", ">8.1f"),
        ("float max", ">10.2e"),
        ("uint8 max", ">10.4f"),
        ("uint8 mean", ">10.4f"),
        ("bound", ">8.4f"),
        ("max |d|<=1", ">10.5f"),
        ("bound", ">8.5f"),
    ]
    keys = (
        "scale_px",
        "float_max",
        "uint8_max",
        "uint8_mean",
        "uint8_bound",
        "uint8_max_small",
        "uint8_bound_small",
    )
    print(report.table(columns, [[row[key] for key in keys] for row in rows]))
    report.write_json(args.json, {"evaluation": "flow_encoding", "encoding": ENCODING_NAME, "scales": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
