"""Dispatcher: run the service selected by PHOENIX_SERVICE."""
import importlib

from phoenix import current


def main():
    name, module, port = current()
    mod = importlib.import_module("phoenix.services." + module)
    mod.main(name, port)


if __name__ == "__main__":
    main()
