"""Pictures of fitted models and benchmark tables (needs matplotlib: ``pip install
'mfkit[plot]'``).

Every function draws on the ``ax`` given or on a new :class:`matplotlib.figure.Figure` made
without pyplot (so no window opens, no backend is switched and nothing is left in pyplot's
figure list; Jupyter still shows the figure), and returns the axes it drew on. :func:`save`
writes a figure atomically in the format its file extension names.
"""

from mfkit.plot._figures import bar_chart, learning_curves, parity, save

__all__ = ["bar_chart", "learning_curves", "parity", "save"]
