"""The core below the radio, optimiser, engine and training: the system and its drops (``system``), a link
and its rate contract (``link``), allocations (``allocation``), the workload of a model (``workload``,
``model_configs``, ``model_table``), the analytical delay model (``delay``), client memory (``memory``)
and the pure cut rule of adaptive cuts (``cut_rule``). It imports only ``channel`` and fedsim's base modules
(``errors``, ``atomic``, ``interrupt``, ``registry``, ``stats``)."""
