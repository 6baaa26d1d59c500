"""Ways of looking inside: the computation graph (graph.py) and plots (plots.py; compare.py for several runs).

Matplotlib and graphviz are imported inside the functions that draw, so that
importing microgpt stays fast.
"""
