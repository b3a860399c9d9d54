"""Coherent synthetic products for `sample_data.py`: a title and a description that state the same facts.

A product is drawn as facts (type, brand, material, colour, measure: size / capacity / count / power,
audience, a feature) and then written twice from those facts: a marketplace-style title and a
description that restates them in running prose (English, or Brazilian Portuguese for
`PT_SHARE` of the products), plus what real listings add: uses, care, a filler sentence or two.
Descriptions do not always repeat every fact (a real seller forgets the brand or the colour at the
rates in `MENTION`), so the describer has something to learn and something it cannot know.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PT_SHARE = 0.3  # share of products written in Portuguese (the original project's users are Brazilian)
# Probability that the description restates a fact the title states (the rest: the seller forgot).
MENTION = {"brand": 0.85, "material": 0.95, "colour": 0.9, "measure": 0.9, "audience": 0.95, "feature": 0.95}

BRANDS = [
    "Acme",
    "Zenith",
    "Nordic",
    "Sunrise",
    "Orion",
    "Maple",
    "Kuro",
    "Bellevue",
    "Atlas",
    "Pioneer",
    "Müller",
    "Señorita",
    "Vitta",
    "Aurora",
    "Brisa",
    "Tropicana",
    "Lumière",
    "Kaiko",
    "Solaris",
    "Ipê",
    "Jandaia",
    "Everest",
    "Kiwi",
    "Nautika",
    "Fjord",
    "Ramos",
    "Cobalt",
    "Tango",
]

# material key -> (English, Portuguese)
MATERIALS = {
    "steel": ("Stainless Steel", "Aço Inoxidável"),
    "ceramic": ("Ceramic", "Cerâmica"),
    "cotton": ("Cotton", "Algodão"),
    "organic_cotton": ("Organic Cotton", "Algodão Orgânico"),
    "nylon": ("Nylon", "Náilon"),
    "leather": ("Leather", "Couro"),
    "silicone": ("Silicone", "Silicone"),
    "bamboo": ("Bamboo", "Bambu"),
    "wood": ("Solid Wood", "Madeira Maciça"),
    "glass": ("Borosilicate Glass", "Vidro Borossilicato"),
    "polyester": ("Polyester", "Poliéster"),
    "wool": ("Merino Wool", "Lã Merino"),
    "aluminium": ("Aluminum", "Alumínio"),
    "plastic": ("BPA-Free Plastic", "Plástico Livre de BPA"),
    "canvas": ("Canvas", "Lona"),
    "tulle": ("Nylon Tulle", "Tule"),
    "mesh": ("Breathable Mesh", "Tela Respirável"),
}
# colour -> (English, Portuguese masculine, Portuguese feminine)
COLOURS = (
    ("Black", "Preto", "Preta"), ("White", "Branco", "Branca"), ("Navy Blue", "Azul-Marinho", "Azul-Marinho"),
    ("Neon Pink", "Rosa Neon", "Rosa Neon"), ("Crimson Red", "Vermelho", "Vermelha"),
    ("Olive Green", "Verde-Oliva", "Verde-Oliva"), ("Grey", "Cinza", "Cinza"), ("Beige", "Bege", "Bege"),
    ("Turquoise", "Turquesa", "Turquesa"), ("Purple", "Roxo", "Roxa"), ("Yellow", "Amarelo", "Amarela"),
    ("Rosé Gold", "Rosé", "Rosé"),
)  # fmt: skip
# audience -> (English title word, English phrase, Portuguese masculine, Portuguese feminine)
AUDIENCES = {
    "women": ("Women's", "women", "Feminino", "Feminina"),
    "men": ("Men's", "men", "Masculino", "Masculina"),
    "kids": ("Kids", "kids", "Infantil", "Infantil"),
    "girls": ("Girls", "girls", "Infantil Menina", "Infantil Menina"),
    "baby": ("Baby", "babies", "Bebê", "Bebê"),
    "unisex": ("Unisex", "everyone", "Unissex", "Unissex"),
}


@dataclass(frozen=True)
class Feature:
    en: str  # title word
    en_sentence: str  # a description sentence that uses the word
    pt: str
    pt_sentence: str


@dataclass(frozen=True)
class ProductType:
    en: str
    pt: str
    gender: str  # Portuguese grammatical gender: "m" or "f"
    materials: tuple[str, ...]
    measure: str  # a key of _MEASURES
    audiences: tuple[str, ...]
    features: tuple[Feature, ...]
    use_en: str
    use_pt: str


F = Feature
_WATERPROOF = F("Waterproof", "The waterproof shell keeps everything dry in the rain.",
                "Impermeável", "O material impermeável mantém tudo seco na chuva.")  # fmt: skip
_PORTABLE = F("Portable", "Portable and light, it goes anywhere in a bag.",
              "Portátil", "Portátil e leve, vai com você para qualquer lugar.")  # fmt: skip
_INSULATED = F("Insulated", "Double-wall insulated: drinks stay hot for 6 hours and cold for 12.",
               "Térmica", "Parede dupla térmica: mantém bebidas quentes por 6 horas e geladas por 12.")  # fmt: skip
_SOFT = F("Soft", "Soft to the touch and comfortable all day.",
          "Macio", "Toque macio e confortável o dia todo.")  # fmt: skip
_ERGONOMIC = F("Ergonomic", "Its ergonomic shape reduces strain on the wrist.",
               "Ergonômico", "O formato ergonômico reduz o esforço do punho.")  # fmt: skip
_FOLDABLE = F("Foldable", "Foldable design: it packs flat when not in use.",
              "Dobrável", "Design dobrável: fica compacto quando não está em uso.")  # fmt: skip
_WIRELESS = F("Wireless", "Wireless Bluetooth 5.3 connection with a range of 10 m.",
              "Sem Fio", "Conexão sem fio Bluetooth 5.3 com alcance de 10 m.")  # fmt: skip
_NONSTICK = F("Non-Stick", "The non-stick coating releases food easily and cleans in seconds.",
              "Antiaderente", "O revestimento antiaderente solta os alimentos com facilidade.")  # fmt: skip
_LED = F("LED", "Energy-saving LED light with three brightness levels.",
         "LED", "Luz de LED econômica com três níveis de brilho.")  # fmt: skip
_BREATHABLE = F("Breathable", "Breathable fabric keeps you cool during exercise.",
                "Respirável", "Tecido respirável que mantém o corpo fresco durante o exercício.")  # fmt: skip
_LAYERED = F("3-Layer", "Three layers (3-layer) of fabric give it a full, fluffy look.",
             "3 Camadas", "São 3 camadas de tecido para um visual volumoso.")  # fmt: skip
_EDUCATIONAL = F("Educational", "An educational toy that trains motor skills and colours.",
                 "Educativo", "Brinquedo educativo que estimula a coordenação motora.")  # fmt: skip
_FAST = F("Fast Charging", "Fast charging fills most phones to 50% in 30 minutes.",
          "Carregamento Rápido", "Carregamento rápido: 50% da bateria em 30 minutos.")  # fmt: skip
_HANDMADE = F("Handmade", "Each piece is handmade, so the grain varies slightly.",
              "Artesanal", "Cada peça é artesanal, com pequenas variações.")  # fmt: skip

T = ProductType
TYPES: tuple[ProductType, ...] = (
    T("Travel Mug", "Caneca", "f", ("steel", "ceramic"), "ml", ("unisex",), (_INSULATED, _PORTABLE),
      "coffee, tea and commuting", "café, chá e o dia a dia"),
    T("Water Bottle", "Garrafa", "f", ("steel", "plastic", "glass"), "ml", ("unisex", "kids"),
      (_INSULATED, _PORTABLE), "gym, hiking and school", "academia, trilhas e escola"),
    T("Backpack", "Mochila", "f", ("nylon", "canvas", "polyester", "leather"), "litre",
      ("unisex", "kids", "women", "men"), (_WATERPROOF, _FOLDABLE), "school, work and travel",
      "escola, trabalho e viagens"),
    T("Ballet Tutu", "Saia Tutu de Balé", "f", ("tulle",), "inch", ("girls",), (_LAYERED, _SOFT),
      "dance classes, parties and dress-up", "aulas de balé, festas e fantasias"),
    T("T-Shirt", "Camiseta", "f", ("cotton", "organic_cotton", "polyester"), "clothing",
      ("women", "men", "kids", "unisex"), (_SOFT, _BREATHABLE), "everyday wear and sports",
      "o dia a dia e a prática de esportes"),
    T("Running Shoes", "Tênis de Corrida", "m", ("mesh", "nylon"), "shoe", ("women", "men"),
      (_BREATHABLE, _SOFT), "running, walking and the gym", "corrida, caminhada e academia"),
    T("Hoodie", "Moletom", "m", ("cotton", "polyester", "wool"), "clothing", ("women", "men", "kids"),
      (_SOFT,), "cold days and lounging at home", "dias frios e ficar em casa"),
    T("Headphones", "Fone de Ouvido", "m", ("plastic", "aluminium", "leather"), "hours", ("unisex",),
      (_WIRELESS, _FOLDABLE), "music, calls and online classes", "música, chamadas e aulas online"),
    T("Power Bank", "Carregador Portátil", "m", ("aluminium", "plastic"), "mah", ("unisex",),
      (_FAST, _PORTABLE), "travel and long days out", "viagens e dias longe da tomada"),
    T("Phone Case 📱", "Capa de Celular 📱", "f", ("silicone", "leather", "plastic"), "phone", ("unisex",),
      (_SOFT,), "protecting your phone from drops", "proteger o celular contra quedas"),
    T("Desk Lamp", "Luminária de Mesa", "f", ("aluminium", "wood", "plastic"), "watt", ("unisex",),
      (_LED, _FOLDABLE), "reading, studying and working late", "leitura, estudos e trabalho"),
    T("Frying Pan", "Frigideira", "f", ("aluminium", "steel"), "cm", ("unisex",), (_NONSTICK,),
      "eggs, pancakes and everyday cooking", "ovos, panquecas e o dia a dia na cozinha"),
    T("Cutting Board", "Tábua de Corte", "f", ("bamboo", "wood", "plastic"), "board", ("unisex",),
      (_HANDMADE,), "chopping vegetables, meat and bread", "cortar legumes, carnes e pães"),
    T("Teapot 日本製", "Bule de Chá 日本製", "m", ("ceramic", "glass"), "ml", ("unisex",), (_HANDMADE,),
      "green tea and herbal infusions", "chá verde e infusões"),
    T("Throw Blanket", "Manta", "f", ("wool", "cotton", "polyester"), "blanket", ("unisex", "baby"),
      (_SOFT,), "the sofa, the bed and cold nights", "o sofá, a cama e noites frias"),
    T("Building Blocks Toy", "Blocos de Montar", "m", ("plastic", "wood"), "pieces", ("kids", "baby"),
      (_EDUCATIONAL,), "creative play at home", "brincadeiras criativas em casa"),
    T("Jigsaw Puzzle", "Quebra-Cabeça", "m", ("wood",), "pieces", ("kids", "unisex"), (_EDUCATIONAL,),
      "family evenings and rainy days", "noites em família e dias de chuva"),
    T("Yoga Mat", "Tapete de Yoga", "m", ("silicone", "plastic"), "mm", ("unisex", "women"),
      (_FOLDABLE, _SOFT), "yoga, pilates and stretching", "yoga, pilates e alongamento"),
    T("Wallet", "Carteira", "f", ("leather", "canvas"), "cards", ("men", "women"), (_HANDMADE,),
      "cards, cash and documents", "cartões, dinheiro e documentos"),
    T("USB-C Cable", "Cabo USB-C", "m", ("nylon", "plastic"), "length", ("unisex",), (_FAST,),
      "charging and syncing phones and laptops", "carregar e sincronizar celulares e notebooks"),
    T("Storage Jars", "Potes Herméticos", "m", ("glass", "plastic"), "pack", ("unisex",), (_INSULATED,),
      "rice, beans, coffee and snacks", "arroz, feijão, café e lanches"),
    T("Baby Bodysuit", "Body de Bebê", "m", ("organic_cotton", "cotton"), "babysize", ("baby",),
      (_SOFT,), "sleep and everyday wear", "dormir e o dia a dia"),
    T("Guitar Strap", "Correia para Violão", "f", ("leather", "nylon"), "strap", ("unisex",), (_ERGONOMIC,),
      "acoustic and electric guitars", "violões e guitarras"),
    T("Wireless Mouse", "Mouse Sem Fio", "m", ("plastic", "aluminium"), "dpi", ("unisex",),
      (_ERGONOMIC, _WIRELESS), "office work and gaming", "escritório e jogos"),
)  # fmt: skip

FILLERS_EN = (
    "Satisfaction guaranteed: if you don't love it, return it within 30 days.",
    "Great gift for birthdays, holidays & special occasions 🎁",
    "Customers love the finish ⭐⭐⭐⭐⭐",
    "Please check the measurements before ordering.",
    "Colours may vary slightly from the photos depending on your screen.",
    "Ships in a recyclable box.",
    "Backed by a 1-year warranty.",
    "Quality tested before it leaves our warehouse.",
)
FILLERS_PT = (
    "Satisfação garantida: se não gostar, devolva em até 30 dias.",
    "Ótima opção de presente para aniversários e datas especiais 🎁",
    "Os clientes adoram o acabamento ⭐⭐⭐⭐⭐",
    "Confira as medidas antes de comprar.",
    "As cores podem variar levemente conforme a tela.",
    "Enviado em embalagem reciclável.",
    "Garantia de 1 ano contra defeitos de fabricação.",
    "Produto com nota fiscal e envio imediato.",
)
# Care instructions by material family: (English, Portuguese) choices.
_TEXTILE = ("cotton", "organic_cotton", "nylon", "polyester", "wool", "canvas", "tulle", "mesh")
_WASHABLE = ("steel", "ceramic", "glass", "silicone", "plastic")
CARE = {
    "textile": (("Machine washable at 30°C; do not bleach.", "Lavável na máquina a 30°C; não use alvejante."),
                ("Hand wash recommended.", "Recomenda-se lavar à mão.")),
    "washable": (("Dishwasher safe.", "Pode ir à lava-louças."),
                 ("Rinse with warm water after use.", "Enxágue com água morna após o uso.")),
    "other": (("Wipe clean with a damp cloth.", "Limpe com um pano úmido."),
              ("Keep away from direct heat.", "Mantenha longe do calor direto.")),
}  # fmt: skip


def care_for(material_key: str) -> tuple[tuple[str, str], ...]:
    if material_key in _TEXTILE:
        return CARE["textile"]
    return CARE["washable"] if material_key in _WASHABLE else CARE["other"]


@dataclass(frozen=True)
class Measure:
    title_en: str
    title_pt: str
    sentence_en: str
    sentence_pt: str


def _measure(kind: str, rng: random.Random) -> Measure:
    """A size, capacity, count or power for the title, with the sentence that restates it."""
    if kind == "ml":
        n = rng.choice((300, 350, 450, 500, 750, 1000))
        return Measure(f"{n} ml", f"{n} ml", f"It holds {n} ml.", f"Capacidade de {n} ml.")
    if kind == "litre":
        n = rng.choice((15, 20, 25, 30, 40))
        return Measure(f"{n}L", f"{n} Litros", f"With a {n}L capacity, it fits a laptop and a change of clothes.",
                       f"Capacidade de {n} litros, cabe notebook e uma muda de roupa.")  # fmt: skip
    if kind == "inch":
        n = rng.choice((10, 12, 14, 16))
        return Measure(f"{n} Inches", f"{n} Polegadas", f"It is {n} inches in length.",
                       f"Tem {n} polegadas de comprimento.")  # fmt: skip
    if kind in ("clothing", "babysize", "shoe"):
        s = rng.choice({"clothing": ("S", "M", "L", "XL"), "babysize": ("0-3M", "3-6M", "6-9M", "9-12M"),
                        "shoe": ("38", "39", "40", "41", "42", "43")}[kind])  # fmt: skip
        return Measure(f"Size {s}", f"Tamanho {s}", f"This listing is for size {s}; see the size chart.",
                       f"Este anúncio é do tamanho {s}; veja a tabela de medidas.")  # fmt: skip
    if kind == "hours":
        n = rng.choice((20, 30, 40, 60))
        return Measure(f"{n}H Battery", f"Bateria {n}h", f"The battery lasts up to {n}h on one charge.",
                       f"A bateria dura até {n}h com uma carga.")  # fmt: skip
    if kind == "mah":
        n = rng.choice((5000, 10000, 20000))
        return Measure(f"{n}mAh", f"{n}mAh", f"The {n}mAh battery charges a phone about three times.",
                       f"A bateria de {n}mAh carrega um celular cerca de três vezes.")  # fmt: skip
    if kind == "phone":
        s = rng.choice(("iPhone 15", "iPhone 14", "Galaxy S24", "Moto G84"))
        return Measure(f"for {s}", f"para {s}", f"Made to fit the {s} exactly, with open ports.",
                       f"Feita sob medida para o {s}, com recortes precisos.")  # fmt: skip
    if kind == "watt":
        n = rng.choice((5, 8, 10, 12))
        return Measure(f"{n}W", f"{n}W", f"It draws only {n}W.", f"Consome apenas {n}W.")
    if kind in ("cm", "strap"):
        n = rng.choice((20, 24, 26, 28) if kind == "cm" else (100, 120, 140))
        return Measure(f"{n} cm", f"{n} cm", f"It measures {n} cm.", f"Mede {n} cm.")
    if kind in ("board", "blanket"):
        a, b = rng.choice(((30, 20), (40, 30), (45, 30)) if kind == "board" else ((130, 160), (150, 200)))
        return Measure(f"{a} x {b} cm", f"{a} x {b} cm", f"It measures {a} x {b} cm.", f"Mede {a} x {b} cm.")
    if kind == "pieces":
        n = rng.choice((100, 250, 500, 1000))
        return Measure(f"{n} Pieces", f"{n} Peças", f"The set has {n} pieces.", f"O conjunto tem {n} peças.")
    if kind == "mm":
        n = rng.choice((4, 6, 8, 10))
        return Measure(f"{n}mm Thick", f"{n}mm de Espessura", f"It is {n}mm thick, cushioning knees and back.",
                       f"Tem {n}mm de espessura e protege joelhos e costas.")  # fmt: skip
    if kind == "cards":
        n = rng.choice((6, 8, 12))
        return Measure(f"{n} Card Slots", f"{n} Compartimentos", f"There are {n} card slots and a coin pocket.",
                       f"São {n} compartimentos para cartões e um porta-moedas.")  # fmt: skip
    if kind == "length":
        n = rng.choice((1, 2, 3))
        return Measure(f"{n}m", f"{n}m", f"The cable is {n}m long.", f"O cabo tem {n}m de comprimento.")
    if kind == "pack":
        n = rng.choice((2, 3, 4, 6))
        return Measure(
            f"Set of {n}", f"Kit com {n}", f"Sold as a set of {n}.", f"Vendido em kit com {n} unidades."
        )
    if kind == "dpi":
        n = rng.choice((1600, 2400, 3200))
        return Measure(f"{n} DPI", f"{n} DPI", f"The sensor tracks at up to {n} DPI.",
                       f"O sensor chega a {n} DPI.")  # fmt: skip
    raise ValueError(kind)


@dataclass(frozen=True)
class SampleProduct:
    lang: str  # "en" | "pt"
    title: str
    facts: tuple[str, ...]  # description variants: the facts block (without filler)
    short: str  # a short description (under the 100-character rule)


def make_product(rng: random.Random) -> SampleProduct:
    kind = rng.choice(TYPES)
    brand = rng.choice(BRANDS)
    material_key = rng.choice(kind.materials)
    material = MATERIALS[material_key]
    care = rng.choice(care_for(material_key))
    colour = rng.choice(COLOURS)
    audience = AUDIENCES[rng.choice(kind.audiences)]
    feature = rng.choice(kind.features)
    measure = _measure(kind.measure, rng)
    # Which facts the title states (a title always has brand and type).
    has = {"material": rng.random() < 0.8, "colour": rng.random() < 0.7, "measure": rng.random() < 0.8,
           "audience": audience[1] != "everyone" and rng.random() < 0.8, "feature": rng.random() < 0.7}  # fmt: skip
    says = {k: has.get(k, True) and rng.random() < MENTION[k] for k in MENTION}
    if rng.random() < PT_SHARE:
        return _portuguese(rng, kind, brand, material, colour, audience, feature, measure, has, says, care[1])
    return _english(rng, kind, brand, material, colour, audience, feature, measure, has, says, care[0])


def _english(
    rng, kind, brand, material, colour, audience, feature, measure, has, says, care
) -> SampleProduct:
    head = [brand]
    if has["audience"]:
        head.append(audience[0])
    if has["feature"]:
        head.append(feature.en)
    head.append(kind.en)
    tail = [
        x
        for x, k in ((material[0], "material"), (colour[0], "colour"), (measure.title_en, "measure"))
        if has[k]
    ]
    sep = rng.choice((" - ", ", ", " | ", " "))
    title = " ".join(head) + (sep + (", " if sep == ", " else sep).join(tail) if tail else "")
    noun = kind.en.lower().replace(" 日本製", "").replace(" 📱", "")
    aud = f" for {audience[1]}" if says["audience"] else ""
    made = f" made of {material[0].lower()}" if says["material"] else ""
    col = f" in {colour[0].lower()}" if says["colour"] else ""
    adj = f"{feature.en.lower()} " if says["feature"] and rng.random() < 0.5 else ""
    openings = [
        f"The {brand} {adj}{noun}{aud} is{made or ' built to last'}{col}." if says["brand"]
        else f"This {adj}{noun}{aud} is{made or ' built to last'}{col}.",
        f"Meet the {adj}{noun} from {brand}{aud}:{made or ' simple and sturdy'}{col}." if says["brand"]
        else f"Meet our {adj}{noun}{aud}:{made or ' simple and sturdy'}{col}.",
    ]  # fmt: skip
    body = [measure.sentence_en] if says["measure"] else []
    if says["feature"]:
        body.append(feature.en_sentence)
    body.append(f"Perfect for {kind.use_en}.")
    body.append(care)
    facts = []
    for opening in openings:
        rest = body[:]
        rng.shuffle(rest)
        facts.append(" ".join([opening, *rest]))
    short = f"{kind.en} by {brand}."[:95] if rng.random() < 0.5 else (measure.sentence_en[:95])
    return SampleProduct("en", title, tuple(facts), short)


def _portuguese(
    rng, kind, brand, material, colour, audience, feature, measure, has, says, care
) -> SampleProduct:
    fem = kind.gender == "f"
    aud_word = audience[3] if fem else audience[2]
    col_word = colour[2] if fem else colour[1]
    parts = [kind.pt]
    if has["audience"]:
        parts.append(aud_word)
    if has["feature"]:
        parts.append(feature.pt)
    parts.append(brand)
    parts += [
        x
        for x, k in ((material[1], "material"), (col_word, "colour"), (measure.title_pt, "measure"))
        if has[k]
    ]
    title = " ".join(parts) if rng.random() < 0.6 else " ".join(parts[:-1]) + " - " + parts[-1]
    noun = kind.pt.replace(" 日本製", "").replace(" 📱", "")
    noun_l = noun[0].lower() + noun[1:] if not noun.isupper() and not noun.startswith("USB") else noun
    aud = f" {aud_word.lower()}" if says["audience"] else ""
    made = f" de {material[1].lower()}" if says["material"] else ""
    col = f" na cor {col_word.lower()}" if says["colour"] else ""
    this, of = ("Esta", "da") if fem else ("Este", "da")
    made_verb = "feita" if fem else "feito"
    openings = [
        f"{noun}{aud} {brand}{made}{col}." if says["brand"] else f"{noun}{aud}{made}{col}.",
        f"{this} {noun_l}{aud} {of} {brand} é {made_verb}{made or ' para durar'}{col}." if says["brand"]
        else f"{this} {noun_l}{aud} é {made_verb}{made or ' para durar'}{col}.",
    ]  # fmt: skip
    body = [measure.sentence_pt] if says["measure"] else []
    if says["feature"]:
        body.append(feature.pt_sentence)
    body.append(f"Ideal para {kind.use_pt}.")
    body.append(care)
    facts = []
    for opening in openings:
        rest = body[:]
        rng.shuffle(rest)
        facts.append(" ".join([opening, *rest]))
    short = f"{noun} {brand}."[:95] if rng.random() < 0.5 else measure.sentence_pt[:95]
    return SampleProduct("pt", title, tuple(facts), short)


def filler_tail(rng: random.Random, lang: str) -> str:
    """Zero to three filler sentences (with a leading space), as sellers append them."""
    pool = FILLERS_PT if lang == "pt" else FILLERS_EN
    n = rng.choice((0, 1, 1, 2, 2, 3))
    return "".join(" " + s for s in rng.sample(pool, n))
