"""Moved to ``fedsim.radio_study`` (the radio study runs sweeps and draws figures, so it sits
above them); ``python -m fedsim.radio.study`` still starts it, without the radio package importing it."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("fedsim.radio_study", run_name="__main__", alter_sys=True)
