"""The browser apps. Each holds UI and session state only; all computation lives in core/."""
