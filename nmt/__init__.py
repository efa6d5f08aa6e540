"""nmt: recurrent neural machine translation with attention.

    from nmt import Translator
    Translator.load("runs/multi30k").translate(["Ein Hund läuft."], beam_size=5)
"""

__version__ = "0.1.0"

__all__ = ["Translator", "__version__"]


def __getattr__(name):
    # Lazy: `import nmt` stays cheap for the command-line tools' argument parsing.
    if name == "Translator":
        from nmt.translate.translator import Translator

        return Translator
    raise AttributeError(name)
