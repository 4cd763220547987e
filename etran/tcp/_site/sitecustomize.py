"""Put first on PYTHONPATH by `etran run`: carries the program's TCP sockets over etran."""
import os

if os.environ.get("ETRAN_TRANSPARENT") == "1":
    try:
        from etran.tcp import transparent as _etran_transparent

        _etran_transparent.install()
    except Exception as _e:  # never stop the program: it keeps the kernel's TCP
        import sys

        print(f"etran run: TCP stays on the kernel ({type(_e).__name__}: {_e})", file=sys.stderr)
