"""Qt + magicgui dock widgets. Thin: build controls, call the engine, turn results into layers."""
