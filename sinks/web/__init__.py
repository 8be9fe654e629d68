"""The officer page (执法人员) and the command-centre dashboard (指挥中心), served by the worker."""
