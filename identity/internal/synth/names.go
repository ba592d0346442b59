package synth

// Name lists, roughly in US frequency order; the generator draws from them
// with Zipf-like weights and builds a long tail of surnames from syllables.

var femaleNames = []string{
	"Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica", "Sarah", "Karen",
	"Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley", "Kimberly", "Emily", "Donna", "Michelle",
	"Carol", "Amanda", "Dorothy", "Melissa", "Deborah", "Stephanie", "Rebecca", "Sharon", "Laura", "Cynthia",
	"Kathleen", "Amy", "Angela", "Shirley", "Anna", "Brenda", "Pamela", "Emma", "Nicole", "Helen",
	"Samantha", "Katherine", "Christine", "Debra", "Rachel", "Carolyn", "Janet", "Catherine", "Maria", "Heather",
	"Diane", "Ruth", "Julie", "Olivia", "Joyce", "Virginia", "Victoria", "Kelly", "Lauren", "Christina",
	"Joan", "Evelyn", "Judith", "Megan", "Andrea", "Cheryl", "Hannah", "Jacqueline", "Martha", "Gloria",
	"Teresa", "Ann", "Sara", "Madison", "Frances", "Kathryn", "Janice", "Jean", "Abigail", "Alice",
	"Judy", "Sophia", "Grace", "Denise", "Amber", "Doris", "Marilyn", "Danielle", "Beverly", "Isabella",
	"Theresa", "Diana", "Natalie", "Brittany", "Charlotte", "Marie", "Kayla", "Alexis", "Lori", "Guadalupe",
	"Rosa", "Ana", "Yesenia", "Xiomara", "Nguyet", "Mei", "Priya", "Aaliyah", "Imani", "Zoe",
}

var maleNames = []string{
	"James", "Robert", "John", "Michael", "David", "William", "Richard", "Joseph", "Thomas", "Charles",
	"Christopher", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul", "Andrew", "Joshua",
	"Kenneth", "Kevin", "Brian", "George", "Timothy", "Ronald", "Edward", "Jason", "Jeffrey", "Ryan",
	"Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry", "Justin", "Scott", "Brandon",
	"Benjamin", "Samuel", "Gregory", "Alexander", "Frank", "Patrick", "Raymond", "Jack", "Dennis", "Jerry",
	"Tyler", "Aaron", "Jose", "Adam", "Nathan", "Henry", "Douglas", "Zachary", "Peter", "Kyle",
	"Ethan", "Walter", "Noah", "Jeremy", "Christian", "Keith", "Roger", "Terry", "Gerald", "Harold",
	"Sean", "Austin", "Carl", "Arthur", "Lawrence", "Dylan", "Jesse", "Jordan", "Bryan", "Billy",
	"Joe", "Bruce", "Gabriel", "Logan", "Albert", "Willie", "Alan", "Juan", "Wayne", "Elijah",
	"Randy", "Roy", "Vincent", "Ralph", "Eugene", "Russell", "Bobby", "Mason", "Philip", "Louis",
	"Carlos", "Luis", "Miguel", "Hector", "Minh", "Wei", "Raj", "DeShawn", "Malik", "Tyrone",
}

var surnames = []string{
	"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
	"Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
	"Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson",
	"Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores",
	"Green", "Adams", "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts",
	"Gomez", "Phillips", "Evans", "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes",
	"Stewart", "Morris", "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper",
	"Peterson", "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson",
	"Watson", "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes",
	"Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster", "Jimenez",
	"O'Brien", "McDonald", "St. Clair", "De La Cruz", "Van Buren", "Okonkwo", "Kowalski", "Schmidt", "Müller", "Nuñez",
}

var syllables = []string{"ber", "wick", "son", "ton", "ley", "man", "field", "worth", "by", "dale", "ham", "ford",
	"stein", "berg", "ski", "ova", "ez", "ardo", "elli", "ini", "ama", "oto", "ang", "ru", "ka", "mor", "gan", "ric", "ter", "lin"}

var streetNames = []string{
	"Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park",
	"Walnut", "Sunset", "Lincoln", "Jackson", "Church", "Highland", "Forest", "Jefferson", "Ridge", "Madison",
	"Spring", "Meadow", "Chestnut", "Willow", "Franklin", "Adams", "River", "Center", "Mill", "Spruce",
	"Cherry", "Sycamore", "Hickory", "Magnolia", "Dogwood", "Birch", "Laurel", "Prospect", "Union", "Broad",
	"Market", "Water", "Academy", "Valley", "Grove", "Railroad", "Fairview", "Woodland", "Liberty", "Court",
	"1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th", "10th",
}

var streetTypes = [][2]string{{"Street", "St"}, {"Avenue", "Ave"}, {"Road", "Rd"}, {"Drive", "Dr"}, {"Lane", "Ln"},
	{"Court", "Ct"}, {"Place", "Pl"}, {"Boulevard", "Blvd"}, {"Circle", "Cir"}, {"Way", "Way"}, {"Terrace", "Ter"}}

var directions = [][2]string{{"North", "N"}, {"South", "S"}, {"East", "E"}, {"West", "W"}}

type city struct {
	name, state string
	zip         int // first ZIP of the city's range
	area        int // telephone area code
}

var cities = []city{
	{"New York", "NY", 10001, 212}, {"Brooklyn", "NY", 11201, 718}, {"Buffalo", "NY", 14201, 716}, {"Los Angeles", "CA", 90001, 213},
	{"San Diego", "CA", 92101, 619}, {"San Jose", "CA", 95110, 408}, {"Fresno", "CA", 93701, 559}, {"Chicago", "IL", 60601, 312},
	{"Springfield", "IL", 62701, 217}, {"Houston", "TX", 77001, 713}, {"Dallas", "TX", 75201, 214}, {"Austin", "TX", 78701, 512},
	{"San Antonio", "TX", 78201, 210}, {"El Paso", "TX", 79901, 915}, {"Phoenix", "AZ", 85001, 602}, {"Tucson", "AZ", 85701, 520},
	{"Philadelphia", "PA", 19101, 215}, {"Pittsburgh", "PA", 15201, 412}, {"Jacksonville", "FL", 32201, 904}, {"Miami", "FL", 33101, 305},
	{"Tampa", "FL", 33601, 813}, {"Orlando", "FL", 32801, 407}, {"Columbus", "OH", 43201, 614}, {"Cleveland", "OH", 44101, 216},
	{"Cincinnati", "OH", 45201, 513}, {"Charlotte", "NC", 28201, 704}, {"Raleigh", "NC", 27601, 919}, {"Indianapolis", "IN", 46201, 317},
	{"Seattle", "WA", 98101, 206}, {"Spokane", "WA", 99201, 509}, {"Denver", "CO", 80201, 303}, {"Boston", "MA", 2108, 617},
	{"Worcester", "MA", 1601, 508}, {"Nashville", "TN", 37201, 615}, {"Memphis", "TN", 38101, 901}, {"Detroit", "MI", 48201, 313},
	{"Grand Rapids", "MI", 49501, 616}, {"Portland", "OR", 97201, 503}, {"Las Vegas", "NV", 89101, 702}, {"Louisville", "KY", 40201, 502},
	{"Baltimore", "MD", 21201, 410}, {"Milwaukee", "WI", 53201, 414}, {"Albuquerque", "NM", 87101, 505}, {"Atlanta", "GA", 30301, 404},
	{"Savannah", "GA", 31401, 912}, {"Omaha", "NE", 68101, 402}, {"Minneapolis", "MN", 55401, 612}, {"Tulsa", "OK", 74101, 918},
	{"Wichita", "KS", 67201, 316}, {"New Orleans", "LA", 70112, 504}, {"Newark", "NJ", 7101, 973}, {"Hartford", "CT", 6101, 860},
	{"Richmond", "VA", 23218, 804}, {"Salt Lake City", "UT", 84101, 801}, {"Birmingham", "AL", 35203, 205}, {"Little Rock", "AR", 72201, 501},
	{"Des Moines", "IA", 50301, 515}, {"Boise", "ID", 83701, 208}, {"Charleston", "SC", 29401, 843}, {"Providence", "RI", 2901, 401},
}

// nicknamesOf are nicknames the generator uses for query variation.
var nicknamesOf = map[string][]string{
	"William": {"Bill", "Will", "Billy"}, "Robert": {"Bob", "Rob", "Bobby"}, "Elizabeth": {"Liz", "Beth", "Betty"},
	"Margaret": {"Peggy", "Maggie", "Meg"}, "James": {"Jim", "Jimmy"}, "Richard": {"Rick", "Dick", "Rich"},
	"Michael": {"Mike"}, "Joseph": {"Joe", "Joey"}, "Thomas": {"Tom", "Tommy"}, "Charles": {"Charlie", "Chuck"},
	"Christopher": {"Chris"}, "Daniel": {"Dan", "Danny"}, "Matthew": {"Matt"}, "Anthony": {"Tony"},
	"Steven": {"Steve"}, "Andrew": {"Andy", "Drew"}, "Joshua": {"Josh"}, "Kenneth": {"Ken", "Kenny"},
	"Timothy": {"Tim"}, "Ronald": {"Ron"}, "Edward": {"Ed", "Eddie", "Ted"}, "Jeffrey": {"Jeff"},
	"Nicholas": {"Nick"}, "Jonathan": {"Jon"}, "Stephen": {"Steve"}, "Benjamin": {"Ben"}, "Samuel": {"Sam"},
	"Gregory": {"Greg"}, "Alexander": {"Alex"}, "Patrick": {"Pat"}, "Raymond": {"Ray"}, "Patricia": {"Pat", "Patty", "Trish"},
	"Jennifer": {"Jen", "Jenny"}, "Susan": {"Sue", "Susie"}, "Jessica": {"Jess"}, "Kimberly": {"Kim"},
	"Deborah": {"Debbie", "Deb"}, "Rebecca": {"Becky"}, "Katherine": {"Kathy", "Kate", "Katie"}, "Catherine": {"Cathy", "Kate"},
	"Christine": {"Chris", "Tina"}, "Victoria": {"Vicky", "Tori"}, "Samantha": {"Sam"}, "Pamela": {"Pam"},
	"Kathleen": {"Kathy"}, "Dorothy": {"Dot", "Dottie"}, "Barbara": {"Barb"}, "Cynthia": {"Cindy"},
	"Abigail": {"Abby"}, "Alexis": {"Lexi"}, "Judith": {"Judy"}, "Frances": {"Fran"}, "Theresa": {"Terry", "Tess"},
	"Lawrence": {"Larry"}, "Gerald": {"Gerry", "Jerry"}, "Harold": {"Harry"}, "Douglas": {"Doug"}, "Zachary": {"Zach"},
	"Philip": {"Phil"}, "Louis": {"Lou"}, "Eugene": {"Gene"}, "Walter": {"Walt"}, "Russell": {"Russ"},
}
