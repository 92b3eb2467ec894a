"""Everything behind the commands (train.py, generate.py, evaluate.py, features.py, bench.py) and
the model (dcgan.py), one concern a module. Nothing is imported here: a command imports the modules
it needs, the plain-Python ones before its flags are parsed and the TensorFlow ones after."""
